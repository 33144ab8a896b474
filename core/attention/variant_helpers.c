/* variant_helpers.c -- small helpers the variants share: repeating grouped key/value heads,
 * broadcasting an option tensor to the shape a variant needs (with an error that names the
 * variant, the option and both shapes), the causal keep-mask as a tensor (on q's device), and what a recompute
 * backward keeps on its node. */
#include "attention_internal.h"

al_tensor *attention_repeat_heads(const al_tensor *t, int64_t H) {
    int64_t Hkv = t->shape[1];
    if (Hkv == H) return al_retain((al_tensor *)t);
    int64_t s5[5] = {t->shape[0], Hkv, 1, t->shape[2], t->shape[3]};
    int64_t e5[5] = {t->shape[0], Hkv, H / Hkv, t->shape[2], t->shape[3]};
    int64_t s4[4] = {t->shape[0], H, t->shape[2], t->shape[3]};
    al_tensor *a = al_reshape(t, 5, s5), *b = a ? al_expand(a, 5, e5) : NULL;
    al_tensor *c = b ? al_reshape(b, 4, s4) : NULL;
    al_release(a); al_release(b);
    return c;
}

al_tensor *attention_broadcast_option(const char *variant, const char *option, const al_tensor *t, int ndim,
                                      const int64_t *shape, const char *expected, al_dtype dt) {
    int nd; int64_t out[AL_MAX_DIMS];
    if (!al_is_float(t->dtype) || t->ndim > ndim || !al_broadcast_shapes("attention", t->ndim, t->shape, ndim, shape, &nd, out) ||
        !al_shape_equal(nd, out, ndim, shape)) {
        al_error("attention: variant '%s' needs %s as a float tensor broadcastable to %s = %s (got %s %s)", variant,
                 option, expected, al_shape_str(ndim, shape), al_dtype_name(t->dtype), TSHAPE(t));
        return NULL;
    }
    al_tensor *c = t->dtype == dt ? al_retain((al_tensor *)t) : al_to_dtype(t, dt);
    al_tensor *e = c ? al_expand(c, ndim, shape) : NULL;
    al_release(c);
    return e;
}

al_tensor *attention_on_device_of(const al_tensor *near, al_tensor *t) {
    if (!t || t->storage->device == near->storage->device) return t;
    al_tensor *moved = al_to_device(t, near->storage->device);
    al_release(t);
    return moved;
}

/* Built on the host, then moved to q's device when that is the GPU (an (N, M) constant per call). */
al_tensor *attention_causal_keep(const attention_problem *p, al_dtype dt) {
    int64_t shape[2] = {p->N, p->M};
    al_tensor *keep = al_full(2, shape, 0, dt);
    if (!keep) return NULL;
    int64_t shift = p->causal == 2 ? p->M - p->N : 0;
    for (int64_t i = 0; i < p->N; i++)
        for (int64_t j = 0; j < p->M && j <= i + shift; j++) {
            if (dt == AL_FLOAT32) ((float *)al_ptr(keep))[i * p->M + j] = 1;
            else ((double *)al_ptr(keep))[i * p->M + j] = 1;
        }
    return attention_on_device_of(p->q, keep);
}

void attention_save_for_recompute(al_node *node, const al_tensor *out, const al_tensor *lse, const attention_problem *p) {
    al_tensor *o = al_alias(out);
    al_node_save(node, 0, o);
    al_release(o);
    al_node_save(node, 1, lse);
    al_node_save(node, 2, p->bias);
    al_node_save(node, 3, p->mask);
}
