/* test_bf16.c: the bf16 products of runtime/bf16.c.
 *
 * References: bf16 rounding against hand-worked bit patterns; every kernel
 * against a float64 product of the same bf16-rounded operands (exact
 * products, so the only error left is fp32 accumulation: <= 1e-5 relative);
 * the same product on unrounded fp32 operands differs by bf16's ~2^-9 (the
 * rounding really happens); oneDNN only where the CPU has AVX-512 BF16.
 */
#include <stdint.h>

#include "../../runtime/bf16.h"
#include "harness.h"

TEST(rounds_to_nearest_even) {
    CHECK(mb_f32_to_bf16(1.0f) == 0x3f80, "%04x", mb_f32_to_bf16(1.0f));
    /* 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even 1 */
    CHECK(mb_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "%04x", mb_f32_to_bf16(1.0f + 0x1p-8f));
    /* 1 + 3*2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up */
    CHECK(mb_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82, "%04x", mb_f32_to_bf16(1.0f + 3 * 0x1p-8f));
    CHECK(mb_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81, "above the tie rounds up");
    CHECK(mb_f32_to_bf16(-2.0f) == 0xc000, "%04x", mb_f32_to_bf16(-2.0f));
    CHECK(mb_f32_to_bf16(INFINITY) == 0x7f80, "inf");
    CHECK(mb_f32_to_bf16(3.4028235e38f) == 0x7f80, "the largest float rounds to inf");
    uint16_t n = mb_f32_to_bf16(NAN);
    CHECK((n & 0x7f80) == 0x7f80 && (n & 0x7f), "NaN stays NaN: %04x", n);
    for (int i = -1000; i <= 1000; i++) { /* round trip of every bf16 value is exact */
        float x = ldexpf((float)i, -5);
        uint16_t h = mb_f32_to_bf16(x);
        CHECK(mb_f32_to_bf16(mb_bf16_bits_to_f32(h)) == h, "x=%g", x);
        CHECK(fabsf(mb_bf16_bits_to_f32(h) - x) <= fabsf(x) * 0x1p-8f, "x=%g -> %g", x, mb_bf16_bits_to_f32(h));
    }
}

/* max |got - ref| / max |ref| of C against the float64 product of the bf16
   operands (or, raw=1, of the unrounded floats). */
static double product_error(mb_bf16_kernel kernel, int ta, int tb, int raw, mb_status *rc) {
    enum { M = 67, N = 45, K = 300 };
    static float a[M * K], b[K * N], c[M * N], c0[M * N];
    static uint16_t a16[M * K], b16[K * N];
    for (int i = 0; i < M * K; i++) a[i] = sinf(0.731f * i) + 0.25f;
    for (int i = 0; i < K * N; i++) b[i] = cosf(0.317f * i) * 0.5f;
    mb_f32_to_bf16_n(a16, a, M * K);
    mb_f32_to_bf16_n(b16, b, K * N);
    for (int i = 0; i < M * N; i++) c0[i] = c[i] = 0.01f * (float)(i % 7);
    const float alpha = 0.75f, beta = 0.5f;
    int lda = ta ? M : K, ldb = tb ? K : N;
    mb_error err = {0};
    *rc = mb_gemm_bf16_with(kernel, ta, tb, M, N, K, alpha, a16, lda, b16, ldb, beta, c, N, &err);
    if (*rc != MB_OK) return 0.0;
    double worst = 0.0, scale = 0.0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++) {
                long ai = ta ? (long)k * lda + i : (long)i * lda + k, bi = tb ? (long)j * ldb + k : (long)k * ldb + j;
                double x = raw ? a[ai] : mb_bf16_bits_to_f32(a16[ai]), y = raw ? b[bi] : mb_bf16_bits_to_f32(b16[bi]);
                s += x * y;
            }
            double ref = alpha * s + beta * c0[i * N + j];
            worst = fmax(worst, fabs(c[i * N + j] - ref));
            scale = fmax(scale, fabs(ref));
        }
    return worst / scale;
}

TEST(emulated_kernel_is_a_bf16_product) {
    for (int t = 0; t < 4; t++) {
        mb_status rc;
        double e = product_error(MB_BF16_EMULATED, t & 1, t >> 1, 0, &rc);
        CHECK(rc == MB_OK && e <= 1e-5, "trans %d: rel err %.3g against the bf16 operands", t, e);
        double raw = product_error(MB_BF16_EMULATED, t & 1, t >> 1, 1, &rc);
        CHECK(raw > 1e-4, "trans %d: rel err %.3g against the fp32 operands (bf16 rounding should show)", t, raw);
    }
}

TEST(onednn_kernel_is_a_bf16_product) {
    if (!mb_bf16_cpu_has()) SKIP("this CPU has no AVX-512 BF16 (oneDNN's bf16 matmul is unimplemented here)");
    for (int t = 0; t < 4; t++) {
        mb_status rc;
        double e = product_error(MB_BF16_ONEDNN, t & 1, t >> 1, 0, &rc);
        CHECK(rc == MB_OK && e <= 1e-5, "trans %d: rc %d, rel err %.3g", t, (int)rc, e);
    }
}

TEST(kernel_choice_follows_the_request) {
    mb_error err = {0};
    const char *why = NULL;
    CHECK(mb_bf16_kernel_set("emulate", &err) == MB_OK, "%s", err.msg);
    CHECK(mb_bf16_kernel_get(&why) == MB_BF16_EMULATED && *why == 0, "emulate");
    CHECK(mb_bf16_kernel_set("off", &err) == MB_OK, "%s", err.msg);
    CHECK(mb_bf16_kernel_get(&why) == MB_BF16_NONE && strstr(why, "MOONBERT_BF16=off"), "off: %s", why);
    CHECK(mb_bf16_kernel_set("auto", &err) == MB_OK, "%s", err.msg);
    mb_bf16_kernel k = mb_bf16_kernel_get(&why);
    if (!mb_bf16_cpu_has()) CHECK(k == MB_BF16_NONE && strstr(why, "AVX-512 BF16"), "auto without the ISA: %s", why);
    else CHECK(k == MB_BF16_ONEDNN, "auto with AVX-512 BF16: %s (%s)", mb_bf16_kernel_name(k), why);
    CHECK(mb_bf16_kernel_set("fp8", &err) == MB_ERR_ARG && strstr(err.msg, "'fp8'"), "%s", err.msg);
}

TEST(weights_sync_converts_what_changed) {
    float w[1000];
    for (int i = 0; i < 1000; i++) w[i] = 0.001f * i - 0.3f;
    mb_bf16_weights t = {0};
    mb_error err = {0};
    CHECK(mb_bf16_weights_sync(&t, w, 1000, &err) == MB_OK, "%s", err.msg);
    for (int i = 0; i < 1000; i++) w[i] += 0.5f;
    CHECK(mb_bf16_weights_sync(&t, w, 1000, &err) == MB_OK, "%s", err.msg);
    CHECK(t.copy[10] == mb_f32_to_bf16(0.01f - 0.3f), "not stale: the copy stays");
    t.stale = 1;
    t.stale_from = 600; /* only the tail (a frozen encoder's head) */
    CHECK(mb_bf16_weights_sync(&t, w, 1000, &err) == MB_OK, "%s", err.msg);
    CHECK(t.copy[10] == mb_f32_to_bf16(0.01f - 0.3f) && t.copy[700] == mb_f32_to_bf16(w[700]), "tail only");
    t.stale = 1;
    CHECK(mb_bf16_weights_sync(&t, w, 1000, &err) == MB_OK, "%s", err.msg);
    for (int i = 0; i < 1000; i++) CHECK(t.copy[i] == mb_f32_to_bf16(w[i]), "i=%d", i);
    mb_bf16_weights_free(&t);
}

int main(void) {
    RUN(rounds_to_nearest_even);
    RUN(emulated_kernel_is_a_bf16_product);
    RUN(onednn_kernel_is_a_bf16_product);
    RUN(kernel_choice_follows_the_request);
    RUN(weights_sync_converts_what_changed);
    mb_bf16_release();
    return harness_end();
}
