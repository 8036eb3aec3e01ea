/* textdata.c: "text;label" lines, RFC 4180 CSV and JSON Lines into records.
 * See textdata.h for the formats, the error rules and the limits.
 */
#include "textdata.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

/* ---- the record store ---------------------------------------------------- */

void mb_textdata_init(mb_textdata *d) { memset(d, 0, sizeof *d); }

void mb_textdata_free(mb_textdata *d) {
    free(d->buf);
    free(d->text_off);
    free(d->text_len);
    free(d->label_off);
    free(d->label_len);
    free(d->line);
    mb_textdata_init(d);
}

static mb_status grow_records(mb_textdata *d, mb_error *err) {
    if (d->n < d->cap) return MB_OK;
    int64_t cap = d->cap ? d->cap * 2 : 256;
    size_t *to = realloc(d->text_off, (size_t)cap * sizeof *to);
    if (to) d->text_off = to;
    size_t *tl = realloc(d->text_len, (size_t)cap * sizeof *tl);
    if (tl) d->text_len = tl;
    size_t *lo = realloc(d->label_off, (size_t)cap * sizeof *lo);
    if (lo) d->label_off = lo;
    size_t *ll = realloc(d->label_len, (size_t)cap * sizeof *ll);
    if (ll) d->label_len = ll;
    int64_t *line = realloc(d->line, (size_t)cap * sizeof *line);
    if (line) d->line = line;
    if (!to || !tl || !lo || !ll || !line)
        return mb_fail(err, MB_ERR_NOMEM, "out of memory for %lld records", (long long)cap);
    d->cap = cap;
    return MB_OK;
}

/* Append len bytes and a NUL to d->buf; the offset of the copy goes to *off. */
static mb_status buf_append(mb_textdata *d, const char *s, size_t len, size_t *off, mb_error *err) {
    if (len + 1 > d->buf_cap - d->buf_len) {
        size_t cap = d->buf_cap ? d->buf_cap : 4096;
        while (len + 1 > cap - d->buf_len) {
            if (cap > SIZE_MAX / 2) return mb_fail(err, MB_ERR_NOMEM, "text data too large");
            cap *= 2;
        }
        char *b = realloc(d->buf, cap);
        if (!b) return mb_fail(err, MB_ERR_NOMEM, "out of memory for %zu bytes of text", cap);
        d->buf = b;
        d->buf_cap = cap;
    }
    *off = d->buf_len;
    if (len) memcpy(d->buf + d->buf_len, s, len);
    d->buf[d->buf_len + len] = '\0';
    d->buf_len += len + 1;
    return MB_OK;
}

static mb_status add_record(mb_textdata *d, const char *text, size_t tlen, const char *label,
                            size_t llen, int64_t line, mb_error *err) {
    mb_status st = grow_records(d, err);
    if (st) return st;
    size_t toff, loff;
    if ((st = buf_append(d, text, tlen, &toff, err))) return st;
    if ((st = buf_append(d, label, llen, &loff, err))) return st;
    d->text_off[d->n] = toff;
    d->text_len[d->n] = tlen;
    d->label_off[d->n] = loff;
    d->label_len[d->n] = llen;
    d->line[d->n] = line;
    d->n++;
    return MB_OK;
}

/* A bad record: an error "name:line: msg", or with skip_bad a count and a kept
   message. Returns MB_OK when the caller should skip and go on. */
static mb_status bad_record(mb_textdata *d, const mb_textdata_opts *o, mb_error *err, const char *name,
                            int64_t line, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static mb_status bad_record(mb_textdata *d, const mb_textdata_opts *o, mb_error *err, const char *name,
                            int64_t line, const char *fmt, ...) {
    char msg[MB_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (o && o->skip_bad) {
        if (d->n_skip_msgs < MB_TEXTDATA_SKIP_MSGS)
            snprintf(d->skip_msgs[d->n_skip_msgs++], sizeof d->skip_msgs[0], "%s:%lld: %s", name,
                     (long long)line, msg);
        d->skipped++;
        return MB_OK;
    }
    return mb_fail(err, MB_ERR_FORMAT, "%s:%lld: %s", name, (long long)line, msg);
}

/* ---- checks shared by the formats ---------------------------------------- */

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n' && s[i] != '\f' && s[i] != '\v')
            return 0;
    return 1;
}

/* NULL when s is valid UTF-8 without NUL bytes, else what is wrong. */
static const char *utf8_problem(const char *s, size_t n, size_t *at) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0) {
            *at = i;
            return "a NUL byte";
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (r <= 0) {
            *at = i;
            return "invalid UTF-8";
        }
        i += (size_t)r;
    }
    return NULL;
}

static void trim(const char **s, size_t *n) {
    while (*n && ((*s)[0] == ' ' || (*s)[0] == '\t')) (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' || (*s)[*n - 1] == '\r')) (*n)--;
}

/* Check a text and a label and store them, or report the bad record. */
static mb_status checked_record(mb_textdata *d, const mb_textdata_opts *o, mb_error *err, const char *name,
                                int64_t line, const char *text, size_t tlen, const char *label, size_t llen) {
    size_t at = 0;
    const char *why;
    trim(&label, &llen);
    if (is_blank(text, tlen)) return bad_record(d, o, err, name, line, "empty text");
    if (llen == 0) return bad_record(d, o, err, name, line, "empty label");
    if ((why = utf8_problem(text, tlen, &at)))
        return bad_record(d, o, err, name, line, "%s in the text at byte %zu", why, at + 1);
    if ((why = utf8_problem(label, llen, &at)))
        return bad_record(d, o, err, name, line, "%s in the label at byte %zu", why, at + 1);
    return add_record(d, text, tlen, label, llen, line, err);
}

static size_t skip_bom(const char *src, size_t len) {
    return len >= 3 && (unsigned char)src[0] == 0xEF && (unsigned char)src[1] == 0xBB &&
                   (unsigned char)src[2] == 0xBF
               ? 3
               : 0;
}

/* The next physical line at *pos: start and length without the LF (and a CR
   before it); *pos moves past the LF. */
static const char *next_line(const char *src, size_t len, size_t *pos, size_t *out_len) {
    const char *ls = src + *pos;
    const char *nl = memchr(ls, '\n', len - *pos);
    size_t ll = nl ? (size_t)(nl - ls) : len - *pos;
    *pos += ll + (nl ? 1 : 0);
    if (ll && ls[ll - 1] == '\r') ll--;
    *out_len = ll;
    return ls;
}

/* ---- text<sep>label ------------------------------------------------------- */

static const char *last_occurrence(const char *s, size_t n, const char *sep, size_t k) {
    if (k == 0 || k > n) return NULL;
    for (size_t i = n - k + 1; i-- > 0;)
        if (s[i] == sep[0] && memcmp(s + i, sep, k) == 0) return s + i;
    return NULL;
}

static const char *first_occurrence(const char *s, size_t n, const char *sep, size_t k) {
    if (k == 0 || k > n) return NULL;
    for (size_t i = 0; i + k <= n; i++)
        if (s[i] == sep[0] && memcmp(s + i, sep, k) == 0) return s + i;
    return NULL;
}

mb_status mb_textdata_parse_sep(mb_textdata *d, const char *name, const char *src, size_t len,
                                const mb_textdata_opts *o, mb_error *err) {
    const char *sep = o && o->sep ? o->sep : ";";
    size_t k = strlen(sep);
    if (k == 0) return mb_fail(err, MB_ERR_ARG, "%s: the separator is empty", name);
    size_t pos = skip_bom(src, len);
    int64_t lineno = 0;
    while (pos < len) {
        lineno++;
        size_t ll;
        const char *ls = next_line(src, len, &pos, &ll);
        if (ll == 0) {
            mb_status st = bad_record(d, o, err, name, lineno, "empty line (expected text%slabel)", sep);
            if (st) return st;
            continue;
        }
        const char *at = o && o->label_first ? first_occurrence(ls, ll, sep, k) : last_occurrence(ls, ll, sep, k);
        if (!at) {
            mb_status st = bad_record(d, o, err, name, lineno, "no '%s' separator (expected text%slabel)", sep, sep);
            if (st) return st;
            continue;
        }
        size_t before = (size_t)(at - ls), after = ll - before - k;
        mb_status st = o && o->label_first ? checked_record(d, o, err, name, lineno, at + k, after, ls, before)
                                           : checked_record(d, o, err, name, lineno, ls, before, at + k, after);
        if (st) return st;
    }
    return MB_OK;
}

/* ---- CSV (RFC 4180) ------------------------------------------------------- */

typedef struct csv_record {
    char *buf; /* field bytes, back to back */
    size_t len, cap;
    size_t *off, *flen;
    int nf, fcap;
} csv_record;

static int csv_putc(csv_record *r, char c) {
    if (r->len == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        char *b = realloc(r->buf, cap);
        if (!b) return -1;
        r->buf = b;
        r->cap = cap;
    }
    r->buf[r->len++] = c;
    return 0;
}

static int csv_end_field(csv_record *r, size_t start) {
    if (r->nf == r->fcap) {
        int cap = r->fcap ? r->fcap * 2 : 16;
        size_t *o = realloc(r->off, (size_t)cap * sizeof *o);
        if (o) r->off = o;
        size_t *l = realloc(r->flen, (size_t)cap * sizeof *l);
        if (l) r->flen = l;
        if (!o || !l) return -1;
        r->fcap = cap;
    }
    r->off[r->nf] = start;
    r->flen[r->nf] = r->len - start;
    r->nf++;
    return 0;
}

enum { CSV_RECORD, CSV_BAD, CSV_NOMEM };

/* One record from *pos (which is < len). On CSV_BAD, why says what is wrong
   and *pos, *lineno are where the problem was found. */
static int csv_read_record(const char *src, size_t len, size_t *pos, int64_t *lineno, char delim,
                           csv_record *r, char *why, size_t why_n) {
    r->len = 0;
    r->nf = 0;
    size_t p = *pos;
    int rc = CSV_RECORD;
    for (;;) {
        size_t start = r->len;
        if (p < len && src[p] == '"') {
            int64_t open_line = *lineno;
            p++;
            for (;;) {
                if (p >= len) {
                    snprintf(why, why_n, "unterminated quoted field (the quote opens on line %lld)",
                             (long long)open_line);
                    rc = CSV_BAD;
                    goto done;
                }
                char c = src[p];
                if (c == '"') {
                    if (p + 1 < len && src[p + 1] == '"') {
                        if (csv_putc(r, '"')) return CSV_NOMEM;
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                if (c == '\n') (*lineno)++;
                if (csv_putc(r, c)) return CSV_NOMEM;
                p++;
            }
            if (csv_end_field(r, start)) return CSV_NOMEM;
            if (p >= len) goto done;
            if (src[p] == delim) {
                p++;
                continue;
            }
            if (src[p] == '\n') {
                p++;
                (*lineno)++;
                goto done;
            }
            if (src[p] == '\r' && p + 1 < len && src[p + 1] == '\n') {
                p += 2;
                (*lineno)++;
                goto done;
            }
            if (src[p] == '\r' && p + 1 == len) {
                p++;
                goto done;
            }
            snprintf(why, why_n, "text after a closing quote (a quoted field ends at '%c', a newline or the end)",
                     delim);
            rc = CSV_BAD;
            goto done;
        }
        /* unquoted field */
        for (;;) {
            if (p >= len) {
                if (csv_end_field(r, start)) return CSV_NOMEM;
                goto done;
            }
            char c = src[p];
            if (c == delim) {
                if (csv_end_field(r, start)) return CSV_NOMEM;
                p++;
                break;
            }
            if (c == '\n' || (c == '\r' && p + 1 < len && src[p + 1] == '\n')) {
                if (csv_end_field(r, start)) return CSV_NOMEM;
                p += c == '\n' ? 1 : 2;
                (*lineno)++;
                goto done;
            }
            if (c == '"') {
                snprintf(why, why_n, "'\"' inside an unquoted field (RFC 4180: quote the whole field and double the quote)");
                rc = CSV_BAD;
                goto done;
            }
            if (csv_putc(r, c)) return CSV_NOMEM;
            p++;
        }
    }
done:
    *pos = p;
    return rc;
}

/* After a bad record: continue on the line after the current position. */
static void csv_resync(const char *src, size_t len, size_t *pos, int64_t *lineno) {
    const char *nl = *pos < len ? memchr(src + *pos, '\n', len - *pos) : NULL;
    if (!nl) {
        *pos = len;
        return;
    }
    *pos = (size_t)(nl - src) + 1;
    (*lineno)++;
}

/* Column names of the header, for messages: "a, b, c". */
static void csv_list_columns(const csv_record *r, char *out, size_t n) {
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < r->nf && used + 1 < n; i++) {
        int w = snprintf(out + used, n - used, "%s'%.*s'", i ? ", " : "", (int)(r->flen[i] > 64 ? 64 : r->flen[i]),
                         r->buf + r->off[i]);
        if (w < 0) break;
        used += (size_t)w;
        if (used >= n) {
            used = n - 1;
            break;
        }
    }
}

static int csv_find_column(const csv_record *r, const char *want) {
    size_t wl = strlen(want);
    for (int i = 0; i < r->nf; i++)
        if (r->flen[i] == wl && memcmp(r->buf + r->off[i], want, wl) == 0) return i;
    return -1;
}

mb_status mb_textdata_parse_csv(mb_textdata *d, const char *name, const char *src, size_t len,
                                const mb_textdata_opts *o, mb_error *err) {
    mb_textdata_opts none = {0};
    if (!o) o = &none;
    char delim = o->delimiter ? o->delimiter : ',';
    if (delim == '"' || delim == '\n' || delim == '\r')
        return mb_fail(err, MB_ERR_ARG, "%s: the CSV delimiter cannot be a quote or a newline", name);
    if (!o->header && (o->text_column || o->label_column))
        return mb_fail(err, MB_ERR_ARG, "%s: columns named by name need header=true (or give column numbers)", name);

    /* Allocated up front so that field pointers are never NULL + 0. */
    csv_record r = {.buf = malloc(256), .cap = 256};
    if (!r.buf) return mb_fail(err, MB_ERR_NOMEM, "%s: out of memory", name);
    mb_status st = MB_OK;
    size_t pos = skip_bom(src, len);
    int64_t lineno = 1;
    int have_columns = 0, expected_nf = 0, text_col = -1, label_col = -1;
    char why[512];
    while (pos < len) {
        int64_t rec_line = lineno;
        int rc = csv_read_record(src, len, &pos, &lineno, delim, &r, why, sizeof why);
        if (rc == CSV_NOMEM) {
            st = mb_fail(err, MB_ERR_NOMEM, "%s:%lld: out of memory", name, (long long)rec_line);
            goto out;
        }
        if (rc == CSV_BAD) {
            if (o->header && !have_columns) {
                st = mb_fail(err, MB_ERR_FORMAT, "%s:%lld: bad header: %s", name, (long long)lineno, why);
                goto out;
            }
            if ((st = bad_record(d, o, err, name, lineno, "%s", why))) goto out;
            csv_resync(src, len, &pos, &lineno);
            continue;
        }
        if (!have_columns) {
            have_columns = 1;
            expected_nf = r.nf;
            if (o->header) {
                const char *tn = o->text_column ? o->text_column : o->text_index > 0 ? NULL : "text";
                const char *ln = o->label_column ? o->label_column : o->label_index > 0 ? NULL : "label";
                text_col = tn ? csv_find_column(&r, tn) : o->text_index - 1;
                label_col = ln ? csv_find_column(&r, ln) : o->label_index - 1;
                char cols[512];
                csv_list_columns(&r, cols, sizeof cols);
                if (tn && text_col < 0) {
                    st = mb_fail(err, MB_ERR_FORMAT, "%s:%lld: no column '%s' in the header (columns: %s)", name,
                                 (long long)rec_line, tn, cols);
                    goto out;
                }
                if (ln && label_col < 0) {
                    st = mb_fail(err, MB_ERR_FORMAT, "%s:%lld: no column '%s' in the header (columns: %s)", name,
                                 (long long)rec_line, ln, cols);
                    goto out;
                }
            } else {
                text_col = (o->text_index > 0 ? o->text_index : 1) - 1;
                label_col = (o->label_index > 0 ? o->label_index : 2) - 1;
            }
            if (text_col >= expected_nf || label_col >= expected_nf) {
                st = mb_fail(err, MB_ERR_FORMAT, "%s:%lld: no column %d: the %s has %d field%s", name,
                             (long long)rec_line, (text_col >= expected_nf ? text_col : label_col) + 1,
                             o->header ? "header" : "first record", expected_nf, expected_nf == 1 ? "" : "s");
                goto out;
            }
            if (text_col == label_col) {
                st = mb_fail(err, MB_ERR_ARG, "%s: the text and label columns are the same (column %d)", name,
                             text_col + 1);
                goto out;
            }
            if (o->header) continue;
        }
        if (r.nf != expected_nf) {
            if ((st = bad_record(d, o, err, name, rec_line, "%d field%s, expected %d", r.nf, r.nf == 1 ? "" : "s",
                                 expected_nf)))
                goto out;
            continue;
        }
        if ((st = checked_record(d, o, err, name, rec_line, r.buf + r.off[text_col], r.flen[text_col],
                                 r.buf + r.off[label_col], r.flen[label_col])))
            goto out;
    }
    if (o->header && !have_columns)
        st = mb_fail(err, MB_ERR_FORMAT, "%s: empty file: no header line", name);
out:
    free(r.buf);
    free(r.off);
    free(r.flen);
    return st;
}

/* ---- JSON Lines ----------------------------------------------------------- */

static void json_list_keys(json_t *obj, char *out, size_t n) {
    size_t used = 0;
    const char *key;
    json_t *v;
    out[0] = '\0';
    json_object_foreach(obj, key, v) {
        int w = snprintf(out + used, n - used, "%s'%.64s'", used ? ", " : "", key);
        if (w < 0 || (size_t)w >= n - used) break;
        used += (size_t)w;
    }
    if (!used) snprintf(out, n, "none");
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "something else";
}

mb_status mb_textdata_parse_jsonl(mb_textdata *d, const char *name, const char *src, size_t len,
                                  const mb_textdata_opts *o, mb_error *err) {
    const char *tf = o && o->text_field ? o->text_field : "text";
    const char *lf = o && o->label_field ? o->label_field : "label";
    size_t pos = skip_bom(src, len);
    int64_t lineno = 0;
    while (pos < len) {
        lineno++;
        size_t ll;
        const char *ls = next_line(src, len, &pos, &ll);
        mb_status st = MB_OK;
        if (is_blank(ls, ll)) {
            if ((st = bad_record(d, o, err, name, lineno, "empty line (expected a JSON object)"))) return st;
            continue;
        }
        json_error_t jerr;
        json_t *obj = json_loadb(ls, ll, 0, &jerr);
        if (!obj) {
            if ((st = bad_record(d, o, err, name, lineno, "invalid JSON: %s (column %d)", jerr.text, jerr.column)))
                return st;
            continue;
        }
        char keys[512], num[32];
        json_t *t = NULL, *l = NULL;
        if (!json_is_object(obj)) {
            st = bad_record(d, o, err, name, lineno, "expected a JSON object, got %s", json_kind(obj));
        } else if (!(t = json_object_get(obj, tf)) || !(l = json_object_get(obj, lf))) {
            json_list_keys(obj, keys, sizeof keys);
            st = bad_record(d, o, err, name, lineno, "no field '%s' (fields: %s)", t ? lf : tf, keys);
        } else if (!json_is_string(t)) {
            st = bad_record(d, o, err, name, lineno, "field '%s' must be a string, got %s", tf, json_kind(t));
        } else if (json_is_string(l)) {
            st = checked_record(d, o, err, name, lineno, json_string_value(t), json_string_length(t),
                                json_string_value(l), json_string_length(l));
        } else if (json_is_integer(l)) {
            int nl = snprintf(num, sizeof num, "%lld", (long long)json_integer_value(l));
            st = checked_record(d, o, err, name, lineno, json_string_value(t), json_string_length(t), num, (size_t)nl);
        } else {
            st = bad_record(d, o, err, name, lineno, "field '%s' must be a string or an integer, got %s", lf,
                            json_kind(l));
        }
        json_decref(obj);
        if (st) return st;
    }
    return MB_OK;
}

/* ---- files ------------------------------------------------------------------ */

mb_status mb_read_file(const char *path, char **out, size_t *len, mb_error *err) {
    *out = NULL;
    *len = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) return mb_fail(err, MB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return mb_fail(err, MB_ERR_IO, "%s: is a directory, not a file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return mb_fail(err, MB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = sb.st_size > 0 ? (size_t)sb.st_size + 1 : 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return mb_fail(err, MB_ERR_NOMEM, "%s: out of memory for %zu bytes", path, cap);
    }
    for (;;) {
        if (n + 1 >= cap) { /* the file grew, or is a pipe */
            char *b = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                fclose(f);
                return mb_fail(err, MB_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = b;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return mb_fail(err, MB_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return MB_OK;
}

mb_status mb_textdata_read(mb_textdata *d, mb_textdata_format format, const char *path,
                           const mb_textdata_opts *opts, mb_error *err) {
    char *src;
    size_t len;
    mb_status st = mb_read_file(path, &src, &len, err);
    if (st) return st;
    switch (format) {
    case MB_TEXTDATA_SEP: st = mb_textdata_parse_sep(d, path, src, len, opts, err); break;
    case MB_TEXTDATA_CSV: st = mb_textdata_parse_csv(d, path, src, len, opts, err); break;
    case MB_TEXTDATA_JSONL: st = mb_textdata_parse_jsonl(d, path, src, len, opts, err); break;
    default: st = mb_fail(err, MB_ERR_ARG, "%s: unknown text data format %d", path, (int)format);
    }
    free(src);
    return st;
}

uint64_t mb_fnv1a64(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
