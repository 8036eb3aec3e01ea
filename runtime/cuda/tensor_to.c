/* tensor_to.c: tensors across devices (mb_tensor_to, mb_tensor_copy_device in runtime/cuda.h).
 *
 * A device tensor is a storage whose data is device memory (mb_storage.device
 * = MB_CUDA), freed with mb_cuda_free when its last view goes. Host logic over
 * runtime/cuda.h's copies, built in every build (without CUDA the copies fail
 * with "built without CUDA"); the bindings only check arguments and push.
 */
#include <string.h>

#include "../cuda.h"

static void release_device(void *data, size_t nbytes, void *ctx) { mb_cuda_free(data); }

static void *base_of(const mb_tensor *t) { return (char *)t->storage->data + t->offset * mb_dtype_size(t->dtype); }

mb_tensor *mb_tensor_to(const mb_tensor *t, mb_device device, mb_error *err) {
    if (t->storage->device == device) return mb_tensor_view(t, err); /* already there, as torch does */
    size_t bytes = (size_t)mb_tensor_numel(t) * mb_dtype_size(t->dtype);
    if (device == MB_CUDA) {
        if (!mb_cuda_available()) {
            mb_fail(err, MB_ERR_UNSUPPORTED, "CUDA is not available: %s", mb_cuda_unavailable_reason());
            return NULL;
        }
        mb_tensor *c = mb_tensor_contiguous(t, err); /* packed on the host first */
        if (!c) return NULL;
        void *d = mb_cuda_malloc(bytes, err);
        mb_tensor *dt = NULL;
        if (d && mb_cuda_memcpy_h2d(d, base_of(c), bytes, err) == MB_OK)
            dt = mb_tensor_wrap(c->dtype, c->ndim, c->shape, d, release_device, NULL, err);
        mb_tensor_free(c);
        if (!dt) {
            mb_cuda_free(d);
            return NULL;
        }
        dt->storage->device = MB_CUDA;
        return dt;
    }
    /* cuda -> cpu: device tensors are contiguous (made so above, or views of a model's block) */
    if (!mb_tensor_is_contiguous(t)) {
        mb_fail(err, MB_ERR_UNSUPPORTED, "a non-contiguous device tensor cannot be copied to the CPU (not supported)");
        return NULL;
    }
    mb_tensor *h = mb_tensor_empty(t->dtype, t->ndim, t->shape, err);
    if (h && mb_cuda_memcpy_d2h(base_of(h), base_of(t), bytes, err) != MB_OK) {
        mb_tensor_free(h);
        return NULL;
    }
    return h;
}

mb_status mb_tensor_copy_device(mb_tensor *dst, const mb_tensor *src, mb_error *err) {
    if (dst->dtype != src->dtype || mb_tensor_numel(dst) != mb_tensor_numel(src) || !mb_tensor_is_contiguous(dst) ||
        !mb_tensor_is_contiguous(src)) {
        char a[64], b[64];
        return mb_fail(err, MB_ERR_SHAPE, "a copy across devices needs contiguous tensors of one dtype and size "
                       "(%s %s into %s %s)", mb_dtype_name(src->dtype), mb_shape_str(src->ndim, src->shape, a, sizeof a),
                       mb_dtype_name(dst->dtype), mb_shape_str(dst->ndim, dst->shape, b, sizeof b));
    }
    size_t n = (size_t)mb_tensor_numel(dst) * mb_dtype_size(dst->dtype);
    int dd = dst->storage->device == MB_CUDA, sd = src->storage->device == MB_CUDA;
    if (dd && sd) return mb_cuda_memcpy_d2d(base_of(dst), base_of(src), n, err);
    if (dd) return mb_cuda_memcpy_h2d(base_of(dst), base_of(src), n, err);
    if (sd) return mb_cuda_memcpy_d2h(base_of(dst), base_of(src), n, err);
    return mb_tensor_copy_(dst, src, err);
}
