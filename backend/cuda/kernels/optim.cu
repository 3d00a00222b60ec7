// Fused multi-tensor AdamW, mirroring nn.AdamW.Update (torch.optim.AdamW's
// arithmetic, in float32). The flat parameter memory is cut by the host
// into chunks of at most a few tens of thousands of elements, each inside
// one segment; chunks[3*c .. 3*c+2] = {offset, length, decay (0 or 1)}. One
// block per chunk. The host passes the step's scalars exactly as the CPU
// computes them: step_size = lr/bc1, sqrt_bc2 = sqrt(bc2), decay_factor =
// 1 - lr*wd. When pbf is not null it also receives the updated parameters
// in bf16 (the copy the forward pass reads).

extern "C" __global__ void adamw_f32(float *p, bf16_t *pbf, const float *g, float *m, float *v, const i64 *chunks, float b1, float b2, float eps, float step_size, float sqrt_bc2, float decay_factor) {
	i64 off = chunks[3 * (i64)blockIdx.x];
	i64 len = chunks[3 * (i64)blockIdx.x + 1];
	float decay = chunks[3 * (i64)blockIdx.x + 2] ? decay_factor : 1.0f;
	float ob1 = 1.0f - b1, ob2 = 1.0f - b2;
	for (i64 j = threadIdx.x; j < len; j += blockDim.x) {
		i64 i = off + j;
		float gg = g[i];
		float pp = p[i] * decay;
		float mm = b1 * m[i] + ob1 * gg;
		float vv = b2 * v[i] + ob2 * gg * gg;
		m[i] = mm;
		v[i] = vv;
		float denom = sqrtf(vv) / sqrt_bc2 + eps;
		pp -= step_size * mm / denom;
		p[i] = pp;
		if (pbf) {
			pbf[i] = f32_to_bf16(pp);
		}
	}
}
