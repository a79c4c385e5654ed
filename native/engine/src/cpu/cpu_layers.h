// Internal: the small non-conv layers on the CPU (NHWC) and request validation shared by backends.
#pragma once
#include "loupe/session.h"

namespace loupe {
namespace internal {

constexpr int kFcOutputs = 1000;

// InvalidArgument for a null input, batch < 1 or a tap outside the enum.
Status ValidateRequest(const RunRequest& req);

// Keras ZeroPadding2D(1) + MaxPooling2D(3, strides 2, valid): the zero pad takes part in the max.
void MaxPool3x3s2Pad1(const float* in, int batch, int h, int w, int c, float* out, int threads);
// out[b][c] = mean over hw positions of in[b][pos][c] (accumulated in double).
void GlobalAvgPool(const float* in, int batch, int hw, int c, float* out);
// out[b][o] = bias[o] + sum_i in[b][i] * w[i][o]   (w is Keras [in, out]; double accumulation)
void Dense(const float* in, int batch, const float* w, const float* bias, int nin, int nout, float* out,
           int threads);
// Row-wise softmax, max-subtracted, in double.
void Softmax(const float* logits, int batch, int n, float* out);

}  // namespace internal
}  // namespace loupe
