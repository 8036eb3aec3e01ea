/* test_safetensors.c: the safetensors reader and writer: round trips, dtype
 * conversion, and every kind of malformed header as a clear error. */
#include <stdint.h>
#include <unistd.h>

#include "../../runtime/safetensors.h"
#include "harness.h"

#pragma GCC diagnostic ignored "-Wformat-zero-length" /* CHECK(cond) without a message */

/* A file image from a header string and data bytes. */
static unsigned char *image(const char *header, const void *data, size_t ndata, size_t *size) {
    size_t hl = strlen(header);
    *size = 8 + hl + ndata;
    unsigned char *buf = malloc(*size + 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (ndata) memcpy(buf + 8 + hl, data, ndata);
    return buf;
}

static mb_status parse_status(const char *header, size_t ndata, char *msg, size_t nmsg) {
    unsigned char data[64] = {0};
    size_t size;
    unsigned char *buf = image(header, data, ndata, &size);
    mb_error err = {0};
    mb_safetensors *st = mb_safetensors_parse(buf, size, &err);
    mb_status rc = st ? MB_OK : err.code;
    snprintf(msg, nmsg, "%s", st ? "" : err.msg);
    mb_safetensors_close(st);
    free(buf);
    return rc;
}

TEST(valid_header_and_metadata) {
    float vals[3] = {1.5f, -2.0f, 3.25f};
    size_t size;
    unsigned char *buf = image("{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F32\",\"shape\":[3],"
                               "\"data_offsets\":[0,12]},\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[12,12]}}",
                               vals, sizeof vals, &size);
    mb_error err;
    mb_safetensors *st = mb_safetensors_parse(buf, size, &err);
    CHECK(st != NULL, "%s", err.msg);
    if (st) {
        CHECK(st->n_tensors == 2);
        CHECK(strcmp(mb_safetensors_meta(st, "format"), "pt") == 0);
        const mb_st_tensor *t = mb_safetensors_find(st, "b");
        float out[3];
        CHECK(t && mb_safetensors_read_f32(t, out, &err) == MB_OK);
        CHECK(out[0] == 1.5f && out[1] == -2.0f && out[2] == 3.25f);
        int32_t iout[3];
        CHECK(mb_safetensors_read_i32(t, iout, &err) == MB_ERR_DTYPE);
        CHECK(mb_safetensors_find(st, "a")->numel == 0);
    }
    mb_safetensors_close(st);
    free(buf);
}

TEST(malformed_headers_are_errors) {
    char msg[1024];
    struct {
        const char *header;
        size_t ndata;
        mb_status code;
        const char *needle;
    } cases[] = {
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, MB_ERR_FORMAT, "overlap"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, MB_ERR_FORMAT, "runs past the end"},
        {"{\"x\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, MB_ERR_DTYPE, "unknown dtype 'Q4'"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16, MB_ERR_FORMAT, "need 12"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, MB_ERR_FORMAT, "non-negative"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, MB_ERR_FORMAT, "increasing"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, MB_ERR_FORMAT, "data_offsets"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"x\":{}}", 4, MB_ERR_FORMAT, "not valid JSON"},
        {"{\"x\":", 0, MB_ERR_FORMAT, "not valid JSON"},
        {"[1,2]", 0, MB_ERR_FORMAT, "not a JSON object"},
        {"{\"__metadata__\":{\"k\":1}}", 0, MB_ERR_FORMAT, "not a string"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4611686018427387904],\"data_offsets\":[0,0]}}", 0,
         MB_ERR_FORMAT, "too large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mb_status rc = parse_status(cases[i].header, cases[i].ndata, msg, sizeof msg);
        CHECK(rc == cases[i].code && strstr(msg, cases[i].needle), "case %zu: got %d '%s', want '%s'", i, rc, msg,
              cases[i].needle);
    }
    /* truncated files */
    mb_error err;
    unsigned char short_buf[5] = {1, 2, 3, 4, 5};
    CHECK(mb_safetensors_parse(short_buf, 5, &err) == NULL && strstr(err.msg, "too short"), "%s", err.msg);
    size_t size;
    unsigned char *buf = image("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd", 4, &size);
    CHECK(mb_safetensors_parse(buf, 20, &err) == NULL && strstr(err.msg, "truncated"), "%s", err.msg);
    CHECK(mb_safetensors_parse(buf, size - 1, &err) == NULL && strstr(err.msg, "runs past the end"), "%s", err.msg);
    buf[7] = 0x7f; /* header length huge */
    CHECK(mb_safetensors_parse(buf, size, &err) == NULL && strstr(err.msg, "limit"), "%s", err.msg);
    free(buf);
}

TEST(half_and_bfloat16_conversion) {
    CHECK(mb_f16_to_f32(0x3c00) == 1.0f);
    CHECK(mb_f16_to_f32(0xc000) == -2.0f);
    CHECK(mb_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(mb_f16_to_f32(0x0001) == ldexpf(1.0f, -24), "smallest subnormal");
    CHECK(mb_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24), "largest subnormal");
    CHECK(isinf(mb_f16_to_f32(0x7c00)) && isnan(mb_f16_to_f32(0x7e00)));
    CHECK(mb_f16_to_f32(0x8000) == 0.0f && signbit(mb_f16_to_f32(0x8000)));
    CHECK(mb_bf16_to_f32(0x3f80) == 1.0f && mb_bf16_to_f32(0xc049) == -3.140625f);
    /* exhaustive: every finite half widens exactly (compare against ldexp) */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        int e = (h >> 10) & 31, man = h & 1023;
        if (e == 31) continue;
        double v = e ? ldexp(1024 + man, e - 25) : ldexp(man, -24);
        if (h & 0x8000) v = -v;
        if (mb_f16_to_f32((uint16_t)h) != (float)v) bad++;
    }
    CHECK(bad == 0, "%d halves convert wrongly", bad);
}

TEST(write_then_read_round_trip) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/mb_test_st_%d.safetensors", (int)getpid());
    float a[6] = {1, 2, 3, 4, 5, 6.5f};
    int32_t b[3] = {-7, 0, 2147483647};
    int64_t sa[2] = {2, 3}, sb[1] = {3};
    mb_st_entry e[2] = {{"weights", MB_ST_F32, 2, sa, a}, {"ids", MB_ST_I32, 1, sb, b}};
    mb_st_meta meta[1] = {{"note", "hello \"world\""}};
    mb_error err;
    CHECK(mb_safetensors_write(path, e, 2, meta, 1, &err) == MB_OK, "%s", err.msg);
    mb_safetensors *st = mb_safetensors_open(path, &err);
    CHECK(st != NULL, "%s", err.msg);
    if (st) {
        CHECK((8 + *(uint64_t *)st->map) % 8 == 0, "header padded to 8 bytes");
        CHECK(strcmp(st->tensors[0].name, "weights") == 0, "order kept");
        float ra[6];
        int32_t rb[3];
        CHECK(mb_safetensors_read_f32(mb_safetensors_find(st, "weights"), ra, &err) == MB_OK);
        CHECK(memcmp(ra, a, sizeof a) == 0);
        CHECK(mb_safetensors_read_i32(mb_safetensors_find(st, "ids"), rb, &err) == MB_OK);
        CHECK(memcmp(rb, b, sizeof b) == 0);
        CHECK(strcmp(mb_safetensors_meta(st, "note"), "hello \"world\"") == 0);
        CHECK(mb_safetensors_find(st, "weights")->shape[1] == 3);
    }
    mb_safetensors_close(st);
    mb_st_entry dup[2] = {{"x", MB_ST_F32, 1, sb, a}, {"x", MB_ST_F32, 1, sb, a}};
    CHECK(mb_safetensors_write(path, dup, 2, NULL, 0, &err) == MB_ERR_ARG);
    unlink(path);
    CHECK(mb_safetensors_open(path, &err) == NULL && strstr(err.msg, "cannot open"), "%s", err.msg);
}

TEST(reads_the_fixture_files) {
    char p[1024];
    if (!harness_shared("fixtures/distilbert-heads12/model.safetensors", p, sizeof p)) SKIP("../shared absent");
    mb_error err;
    mb_safetensors *st = mb_safetensors_open(p, &err);
    CHECK(st != NULL, "%s", err.msg);
    if (!st) return;
    CHECK(st->n_tensors == 24);
    int f16 = 0;
    for (int i = 0; i < st->n_tensors; i++) f16 += st->tensors[i].dtype == MB_ST_F16;
    CHECK(f16 == 24, "F16 fixture");
    mb_safetensors_close(st);
}

int main(void) {
    RUN(valid_header_and_metadata);
    RUN(malformed_headers_are_errors);
    RUN(half_and_bfloat16_conversion);
    RUN(write_then_read_round_trip);
    RUN(reads_the_fixture_files);
    return harness_end();
}
