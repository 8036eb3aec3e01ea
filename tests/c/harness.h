/* harness.h: a small test harness for the runtime's C tests.
 *
 *   TEST(matmul_matches_naive) { CHECK(x == y, "x=%d", x); CHECK_NEAR(a, b, 1e-6); }
 *   int main(void) { RUN(matmul_matches_naive); return harness_end(); }
 *
 * A test counts as passed when none of its CHECKs failed; SKIP("why") ends it as
 * skipped. harness_end() prints "RESULT passed failed skipped" for scripts/run-tests
 * and returns non-zero when anything failed. Fixtures are found under
 * $MOONBERT_SHARED (default ../shared); harness_shared() returns NULL if absent.
 */
#ifndef MB_TEST_HARNESS_H
#define MB_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int h_passed, h_failed, h_skipped;
static int h_cur_failed, h_cur_skipped;
static const char *h_cur_name;

#define TEST(name) static void name(void)

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            h_cur_failed++;                                                     \
            fprintf(stderr, "FAIL %s (%s:%d): %s: ", h_cur_name, __FILE__,      \
                    __LINE__, #cond);                                           \
            fprintf(stderr, "" __VA_ARGS__);                                    \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                   \
    do {                                                                        \
        double h_a = (a), h_b = (b);                                            \
        CHECK(fabs(h_a - h_b) <= (tol), "%.9g vs %.9g (tol %.3g)", h_a, h_b,    \
              (double)(tol));                                                   \
    } while (0)

#define SKIP(...)                                                               \
    do {                                                                        \
        h_cur_skipped = 1;                                                      \
        fprintf(stderr, "SKIP %s: ", h_cur_name);                              \
        fprintf(stderr, __VA_ARGS__);                                           \
        fputc('\n', stderr);                                                    \
        return;                                                                 \
    } while (0)

#define RUN(name)                                                               \
    do {                                                                        \
        h_cur_name = #name;                                                     \
        h_cur_failed = 0;                                                       \
        h_cur_skipped = 0;                                                      \
        name();                                                                 \
        if (h_cur_failed) h_failed++;                                           \
        else if (h_cur_skipped) h_skipped++;                                    \
        else h_passed++;                                                        \
        if (getenv("HARNESS_VERBOSE"))                                          \
            fprintf(stderr, "%s %s\n", h_cur_failed ? "not ok" : "ok", #name);  \
    } while (0)

static inline int harness_end(void) {
    printf("RESULT %d %d %d\n", h_passed, h_failed, h_skipped);
    return h_failed ? 1 : 0;
}

/* Path under the shared folder into buf, or NULL when the folder is absent. */
static inline const char *harness_shared(const char *rel, char *buf, size_t n) {
    const char *root = getenv("MOONBERT_SHARED");
    if (!root || !*root) root = "../shared";
    snprintf(buf, n, "%s/%s", root, rel);
    struct stat st;
    return stat(buf, &st) == 0 ? buf : NULL;
}

/* A path that does not exist, for error tests: <fresh temporary name>/<tag>. The name
   comes from mkdtemp (so nobody else has it) and the empty folder is removed again. */
static inline const char *harness_missing(const char *tag, char *buf, size_t n) {
    const char *tmp = getenv("TMPDIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/moonbert-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) snprintf(dir, sizeof dir, "/proc/self/moonbert-absent"); /* cannot exist */
    else rmdir(dir);
    snprintf(buf, n, "%s/%s", dir, tag);
    return buf;
}

#endif
