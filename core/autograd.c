/* autograd.c -- the define-by-run graph and the reverse pass.
 *
 * Every op that sees an input with requires_grad (while grad mode is on) gives its output a node:
 * the backward function, references to the inputs and to whatever the backward needs.  The graph
 * is therefore owned by the tensors: it lives while the loss does.  al_backward() orders the nodes
 * reachable from the loss (Kahn's algorithm on consumer counts), runs each backward once with its
 * summed incoming gradient, accumulates into the leaves' .grad and then frees the graph: each node
 * drops its inputs and saved tensors, so per-step temporaries go as soon as Lua drops the loss. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

static bool grad_enabled = true;
static int64_t live_nodes;

int al_set_grad_enabled(int enabled) {
    int prev = grad_enabled;
    grad_enabled = enabled != 0;
    return prev;
}
int al_is_grad_enabled(void) { return grad_enabled; }
int64_t al_live_nodes(void) { return live_nodes; }

bool al_grad_needed1(const al_tensor *a) { return grad_enabled && a && a->requires_grad; }
bool al_grad_needed2(const al_tensor *a, const al_tensor *b) {
    return grad_enabled && ((a && a->requires_grad) || (b && b->requires_grad));
}

al_node *al_record(al_tensor *out, const char *name, al_backward_fn backward, int n_inputs,
                   const al_tensor *const *inputs) {
    al_node *node = calloc(1, sizeof *node);
    if (!node) return NULL; /* the output simply has no history; rare enough not to fail the op */
    node->refcount = 1;
    node->name = name;
    node->backward = backward;
    node->n_inputs = n_inputs;
    for (int i = 0; i < n_inputs; i++) node->inputs[i] = al_retain((al_tensor *)inputs[i]);
    node->out_ndim = out->ndim;
    memcpy(node->out_shape, out->shape, sizeof out->shape);
    node->out_dtype = out->dtype;
    if (out->grad_fn) al_node_release(out->grad_fn);
    out->grad_fn = node;
    out->requires_grad = true;
    live_nodes++;
    return node;
}

void al_node_save(al_node *node, int slot, const al_tensor *t) {
    al_release(node->saved[slot]);
    node->saved[slot] = al_retain((al_tensor *)t);
}

static void node_drop_history(al_node *node) {
    for (int i = 0; i < AL_NODE_MAX_INPUTS; i++) { al_release(node->inputs[i]); node->inputs[i] = NULL; }
    for (int i = 0; i < AL_NODE_MAX_SAVED; i++) { al_release(node->saved[i]); node->saved[i] = NULL; }
    al_release(node->grad_accum);
    node->grad_accum = NULL;
    free(node->ctx);
    node->ctx = NULL;
}

void al_node_release(al_node *node) {
    if (!node || --node->refcount > 0) return;
    node_drop_history(node);
    live_nodes--;
    free(node);
}

bool al_input_needs_grad(const al_node *node, int i) {
    return i < node->n_inputs && node->inputs[i] && node->inputs[i]->requires_grad;
}

/* Whether a gradient slot's tensor can take a sum in place: nothing but the slot holds it or its
 * storage (the backward that produced it has let go), it is dense and g matches it.  The residual
 * stream of a transformer gathers several gradients per block, and summing in place saves a fresh
 * tensor and a pass over it each time. */
static bool sole_owner(const al_tensor *slot) {
    return slot->refcount == 1 && slot->storage->refcount == 1 && !slot->grad_fn && al_is_contiguous(slot);
}
static bool fits(const al_tensor *slot, const al_tensor *g) {
    return slot->dtype == g->dtype && al_shape_equal(slot->ndim, slot->shape, g->ndim, g->shape);
}

/* Adds g into dst (a gradient slot), creating it when empty.  Leaf gradients are always fresh,
 * contiguous tensors of their own, because optimisers and clipping change them in place. */
static void accumulate_into(al_tensor **slot, const al_tensor *g, al_dtype dtype, bool own) {
    if (!*slot) {
        if (own || g->dtype != dtype) {
            al_tensor *c = al_new_tensor_on(g->ndim, g->shape, dtype, g->storage->device);
            if (c) al_copy_(c, g);
            *slot = c;
        } else {
            *slot = al_retain((al_tensor *)g);
        }
    } else if (own || (sole_owner(*slot) && fits(*slot, g))) {
        al_add_into_(*slot, g);
    } else {
        al_tensor *sum = al_add(*slot, g);
        if (sum) { al_release(*slot); *slot = sum; }
    }
}

void al_accumulate_input(al_node *node, int i, const al_tensor *g) {
    if (!g || !al_input_needs_grad(node, i)) return;
    al_tensor *x = node->inputs[i];
    al_tensor *fitted = NULL;
    if (!al_shape_equal(g->ndim, g->shape, x->ndim, x->shape)) {
        /* a backward may produce a broadcastable gradient; fold it to the input's shape */
        fitted = al_sum_to_shape(g, x->ndim, x->shape);
        if (!fitted) return;
        g = fitted;
    }
    if (x->grad_fn) accumulate_into(&x->grad_fn->grad_accum, g, x->dtype, false);
    else accumulate_into(&x->grad, g, x->dtype, true);
    al_release(fitted);
}

/* The gradient of a narrow (or, squeezed, a select) of input i: g goes into the window [start,
 * start + g's size) along dim.  When input i's slot can take it in place (a leaf's own gradient, or a
 * slot nothing else holds), only the window is touched; otherwise a zero tensor with g in its
 * window is accumulated.  Splitting one projection into q, k and v (three narrows of one tensor)
 * thus costs one zero fill and three window writes in the backward, not three full tensors. */
void al_accumulate_input_window(al_node *node, int i, const al_tensor *g, int dim, int64_t start, bool squeezed) {
    if (!g || !al_input_needs_grad(node, i)) return;
    al_tensor *x = node->inputs[i];
    al_tensor **slot = x->grad_fn ? &x->grad_fn->grad_accum : &x->grad;
    const bool in_place = *slot && (*slot)->dtype == x->dtype && (x->grad_fn ? sole_owner(*slot) : al_is_contiguous(*slot));
    al_tensor *target = in_place ? al_retain(*slot) : al_full_on(x->ndim, x->shape, 0, x->dtype, x->storage->device);
    if (!target) return;
    al_tensor *w = al_narrow(target, dim, start, squeezed ? 1 : g->shape[dim]);
    al_tensor *window = w && squeezed ? al_squeeze(w, dim) : al_retain(w);
    if (window) {
        if (in_place) al_add_into_(window, g);
        else al_copy_(window, g);
    }
    al_release(window);
    al_release(w);
    if (!in_place) {
        if (*slot) accumulate_into(slot, target, x->dtype, !x->grad_fn);
        else *slot = al_retain(target);   /* fresh zeros with g in them: the slot's own */
    }
    al_release(target);
}

/* As al_accumulate_input, but takes the caller's reference to g: a leaf with no gradient yet adopts
 * g itself when nothing else can see it (contiguous, sole owner of its storage, the leaf's shape
 * and dtype) instead of copying it -- at long sequence lengths those copies of dq, dk, dv were as
 * large as the gradients themselves. */
void al_accumulate_input_take(al_node *node, int i, al_tensor *g) {
    if (!g) return;
    al_tensor *x = al_input_needs_grad(node, i) ? node->inputs[i] : NULL;
    if (x && !x->grad_fn && !x->grad && g->refcount == 1 && g->storage->refcount == 1 && !g->grad_fn &&
        g->dtype == x->dtype && al_shape_equal(g->ndim, g->shape, x->ndim, x->shape) && al_is_contiguous(g)) {
        x->grad = g;
        return;
    }
    al_accumulate_input(node, i, g);
    al_release(g);
}

typedef struct { al_node **items; int64_t n, cap; } node_list;

static bool list_push(node_list *l, al_node *node) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 64;
        al_node **items = realloc(l->items, sizeof *items * (size_t)cap);
        if (!items) return false;
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = node;
    return true;
}

/* The first visit of node in collect: marked, retained, and pushed onto both lists; -1 (raised)
 * when a list cannot grow. */
static int visit(al_node *node, node_list *all, node_list *stack) {
    node->visited = true;
    node->pending = 0;
    node->refcount++;
    if (list_push(all, node) && list_push(stack, node)) return 0;
    al_error("backward: out of memory");
    return -1;
}

/* Collects every node reachable from root (each once, retained) and counts, for each, how many
 * reachable nodes consume its output. */
static int collect(al_node *root, node_list *all) {
    node_list stack = {0};
    int rc = visit(root, all, &stack);
    while (rc == 0 && stack.n > 0) {
        al_node *node = stack.items[--stack.n];
        if (node->spent) {
            al_error("backward: the graph through '%s' was already freed by an earlier backward",
                     node->name);
            rc = -1;
            break;
        }
        for (int i = 0; i < node->n_inputs; i++) {
            al_tensor *x = node->inputs[i];
            if (!x || !x->requires_grad || !x->grad_fn) continue;
            al_node *up = x->grad_fn;
            if (!up->visited && (rc = visit(up, all, &stack)) != 0) break;
            up->pending++;
        }
    }
    free(stack.items);
    return rc;
}

int al_backward(al_tensor *loss, const al_tensor *grad) {
    if (!loss) { al_error("backward: tensor is missing"); return -1; }
    if (!al_same_device_any_dtype("backward", loss, grad, NULL)) return -1;   /* each node's backward runs on its own device */
    if (!loss->requires_grad) {
        al_error("backward: the tensor does not require grad (no parameter with requires_grad "
                 "was used to compute it, or it was computed under no_grad)");
        return -1;
    }
    al_tensor *seed;
    if (grad) {
        if (!al_shape_equal(grad->ndim, grad->shape, loss->ndim, loss->shape)) {
            al_error("backward: gradient of shape %s given for a tensor of shape %s", TSHAPE(grad),
                     TSHAPE(loss));
            return -1;
        }
        seed = al_to_dtype_nograd(grad, loss->dtype);
    } else {
        if (al_numel(loss) != 1) {
            al_error("backward: called on a tensor of shape %s; backward without a gradient needs "
                     "a single-element loss (reduce it with :sum() or :mean() first)", TSHAPE(loss));
            return -1;
        }
        seed = al_full_on(loss->ndim, loss->shape, 1.0, loss->dtype, loss->storage->device);
    }
    if (!seed) return -1;
    int prev = al_set_grad_enabled(0);
    int rc = 0;
    if (!loss->grad_fn) {
        accumulate_into(&loss->grad, seed, loss->dtype, true);
    } else {
        node_list all = {0}, ready = {0};
        al_node *root = loss->grad_fn;
        rc = collect(root, &all);
        if (rc == 0) {
            accumulate_into(&root->grad_accum, seed, root->out_dtype, false);
            list_push(&ready, root);
        }
        while (rc == 0 && ready.n > 0) {
            al_node *node = ready.items[--ready.n];
            const int64_t errors_before = al_error_count();
            if (node->grad_accum) al_profile_backward(node);
            if (al_error_count() != errors_before) {
                /* a backward that failed (out of memory, say) leaves gradients missing: stop and say
                 * where, rather than return gradients that are silently incomplete */
                char why[512];
                snprintf(why, sizeof why, "%s", al_last_error());
                al_error("backward: the gradient of '%s' failed: %s", node->name, why);
                rc = -1;
            }
            for (int i = 0; i < node->n_inputs; i++) {
                al_tensor *x = node->inputs[i];
                if (!x || !x->requires_grad || !x->grad_fn) continue;
                if (--x->grad_fn->pending == 0) list_push(&ready, x->grad_fn);
            }
            node_drop_history(node);
            node->spent = true;
        }
        for (int64_t i = 0; i < all.n; i++) {
            all.items[i]->visited = false;
            al_node_release(all.items[i]);
        }
        free(all.items);
        free(ready.items);
    }
    al_release(seed);
    al_set_grad_enabled(prev);
    return rc;
}

/* ---- leaves and their gradients ------------------------------------------------------------ */

int al_set_requires_grad(al_tensor *t, int flag) {
    if (!t) { al_error("requires_grad: tensor is missing"); return -1; }
    if (t->grad_fn) {
        al_error("requires_grad: only leaf tensors can change requires_grad; this one was computed "
                 "by '%s' (use :detach() first)", t->grad_fn->name);
        return -1;
    }
    if (flag && !al_is_floating_point(t->dtype)) {
        al_error("requires_grad: only float tensors can require grad (this one is %s)",
                 al_dtype_name(t->dtype));
        return -1;
    }
    t->requires_grad = flag != 0;
    return 0;
}

int al_requires_grad(const al_tensor *t) { return t && t->requires_grad; }
int al_is_leaf(const al_tensor *t) { return t && !t->grad_fn; }
const char *al_grad_fn_name(const al_tensor *t) { return t && t->grad_fn ? t->grad_fn->name : NULL; }
al_tensor *al_grad(const al_tensor *t) { return t ? al_retain(t->grad) : NULL; }

int al_set_grad(al_tensor *t, const al_tensor *grad) {
    if (!t) { al_error("set_grad: tensor is missing"); return -1; }
    if (grad && !al_shape_equal(grad->ndim, grad->shape, t->ndim, t->shape)) {
        al_error("set_grad: gradient of shape %s for a tensor of shape %s", TSHAPE(grad), TSHAPE(t));
        return -1;
    }
    al_tensor *copy = grad ? al_to_dtype_nograd(grad, t->dtype) : NULL;
    if (grad && !copy) return -1;
    if (copy && copy->storage == grad->storage) { /* make it a tensor of its own */
        al_tensor *own = al_new_like(copy);
        if (!own) { al_release(copy); return -1; }
        al_copy_(own, copy);
        al_release(copy);
        copy = own;
    }
    al_release(t->grad);
    t->grad = copy;
    return 0;
}

int al_zero_grad(al_tensor *t) {
    if (!t) { al_error("zero_grad: tensor is missing"); return -1; }
    al_release(t->grad);
    t->grad = NULL;
    return 0;
}
