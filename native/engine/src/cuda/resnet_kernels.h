// Our own CUDA kernels around cuDNN's convolutions in the ResNet-50 forward (resnet_kernels.cu).
// Host-callable launchers: each enqueues on `stream` and returns the launch status (cudaGetLastError),
// so they can be captured into a CUDA graph. Tensors are NHWC; "act" tensors are in the storage type.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace loupe {
namespace cuda {

enum class DType : int { kF32 = 0, kBF16 = 1, kF16 = 2 };
inline int DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }

// out[p][c] = c < cin ? in[p][c] : 0 for c < cpad (cpad >= cin), converted to `out_type`.
cudaError_t LaunchConvertInput(const float* in, void* out, DType out_type, int64_t pixels, int cin,
                               int cpad, cudaStream_t stream);

// Keras ZeroPadding2D(1) + MaxPooling2D(3, strides 2): out [n][oh][ow][c], out-of-range taps read 0.
cudaError_t LaunchMaxPool3x3s2p1(const void* in, void* out, DType t, int n, int h, int w, int c,
                                 int oh, int ow, cudaStream_t stream);

// out[n][c] = mean over hw of in[n][hw][c] (fp32 result).
cudaError_t LaunchGlobalAvgPool(const void* in, float* out, DType t, int n, int hw, int c,
                                cudaStream_t stream);

// out[n][m] = sum_k a[n][k] * w[k][m] + bias[m], all fp32 (Keras dense kernel layout [in, out]).
cudaError_t LaunchDense(const float* a, const float* w, const float* bias, float* out, int n, int k,
                        int m, cudaStream_t stream);

// Row-wise softmax over m columns, fp32 (max-subtracted, expf).
cudaError_t LaunchSoftmax(const float* in, float* out, int n, int m, cudaStream_t stream);

// y = relu?(y + bias[c] (+ z)) in place; y, z in `t`, bias fp32 [c]; `elements` = n*h*w*c.
cudaError_t LaunchBiasResidualAct(void* y, const float* bias, const void* z, DType t, int64_t elements,
                                  int c, bool relu, cudaStream_t stream);

// out (fp32) = in (storage type `t`), `elements` values.
cudaError_t LaunchToFloat(const void* in, float* out, DType t, int64_t elements, cudaStream_t stream);

// cudaSuccess when this binary holds machine code (or PTX) that runs on the current device.
cudaError_t KernelsRunnableOnCurrentDevice();

}  // namespace cuda
}  // namespace loupe
