/* device.c -- moving tensors between the CPU and the CUDA device, with gradients across.
 *
 * The one place where memory crosses devices: al_to_device copies a tensor's elements to a
 * storage of the other device (the backend's al_cuda_memcpy does the copy; core/cuda/ when built
 * with `make CUDA=1`, core/cuda/absent.c otherwise, which refuses).  Ops never copy across devices
 * on their own: an op given tensors of two devices refuses (al_same_device; al_require_cpu for the
 * ops with no CUDA kernel), as PyTorch does, so that no transfer is ever hidden in a training step. */
#include "internal.h"

/* A contiguous copy of t on device.  A CUDA tensor that is not contiguous is made contiguous on
 * the device first (the backend's strided copy), so only dense blocks cross. */
static al_tensor *copy_to(const al_tensor *t, al_device device) {
    al_device from = t->storage->device;
    al_tensor *src = from == AL_CPU ? al_contiguous_nograd(t) : al_cuda_contiguous(t);
    if (!src) return NULL;
    al_tensor *out = al_new_tensor_on(src->ndim, src->shape, src->dtype, device);
    size_t nbytes = (size_t)al_numel(src) * al_dtype_size(src->dtype);
    if (out && nbytes && al_cuda_memcpy("to", al_ptr(out), device, al_ptr(src), from, nbytes) < 0) {
        al_release(out);
        out = NULL;
    }
    al_release(src);
    return out;
}

static void to_device_backward(al_node *node, const al_tensor *g) {
    al_tensor *back = copy_to(g, node->inputs[0]->storage->device);
    if (back) al_accumulate_input(node, 0, back);
    al_release(back);
}

al_tensor *al_to_device(const al_tensor *t, al_device device) {
    CHECK_TENSOR("to", t, "self");
    if (device != AL_CPU && device != AL_CUDA) {
        al_error("to: unknown device %d (cpu or cuda)", (int)device);
        return NULL;
    }
    if (t->storage->device == device) return al_retain((al_tensor *)t);
    if (t->dtype == AL_BFLOAT16) {
        al_error("to: bfloat16 tensors live on the CUDA device only; convert with to(\"float32\") before moving %s "
                 "to the CPU", TSHAPE(t));
        return NULL;
    }
    if (!al_cuda_available()) {
        al_error("to: no CUDA device (%s)", al_cuda_unavailable_reason());
        return NULL;
    }
    al_tensor *out = copy_to(t, device);
    if (out && al_grad_needed1(t)) al_record(out, "to", to_device_backward, 1, &t);
    return out;
}

al_tensor *al_to_cpu_nograd(const al_tensor *t) {
    if (t->storage->device == AL_CPU) return al_retain((al_tensor *)t);
    return copy_to(t, AL_CPU);
}
