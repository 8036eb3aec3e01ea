/* textdata.h: parsing labelled text files into (text, label) records.
 *
 * Three formats, each a function over a byte buffer (so that tests and the
 * libFuzzer targets need no files) plus one reader that loads a file:
 *   - "text;label" lines: the label follows the LAST separator on the line, so
 *     texts may contain the separator (the CARER emotion files); with
 *     label_first, "label;text" lines split at the FIRST separator.
 *   - CSV as in RFC 4180: quoted fields may hold the delimiter, "" (an escaped
 *     quote), LF and CRLF; records end with LF or CRLF; every record has as
 *     many fields as the first one. Strict: a quote inside an unquoted field or
 *     text after a closing quote is an error, not a guess.
 *   - JSON Lines: one JSON object per line (parsed with jansson); the text field
 *     is a string, the label field a string or an integer.
 *
 * Labels are kept as strings (names or ids as written; integers in JSON are
 * printed in decimal); mapping them to 0-based ids is the caller's business.
 * Every record remembers the 1-based line it starts on, so that later checks
 * (an unknown label) can name the line too.
 *
 * Bad input is an error "PATH:LINE: what is wrong" and nothing is dropped
 * silently: a line with no separator, an empty text or label, invalid UTF-8,
 * a NUL byte, a CSV record with the wrong number of fields or a broken quote,
 * a broken JSON line or a missing field. With opts.skip_bad the bad record is
 * skipped instead and counted in d->skipped (the first few messages are kept
 * in d->skip_msgs). File-level problems (a missing file, a CSV header without
 * the asked-for column) are errors either way.
 *
 * Limits: the whole file is read into memory; texts are bytes (UTF-8 is
 * checked, not normalised); blank lines are bad records, not ignored.
 */
#ifndef MB_TEXTDATA_H
#define MB_TEXTDATA_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define MB_TEXTDATA_SKIP_MSGS 8

typedef enum mb_textdata_format {
    MB_TEXTDATA_SEP = 0, /* text<sep>label lines */
    MB_TEXTDATA_CSV,
    MB_TEXTDATA_JSONL
} mb_textdata_format;

typedef struct mb_textdata {
    int64_t n;            /* records */
    int64_t cap;
    char *buf;            /* every text and label, each NUL-terminated */
    size_t buf_len, buf_cap;
    size_t *text_off, *text_len;   /* [n] into buf */
    size_t *label_off, *label_len; /* [n] into buf */
    int64_t *line;        /* [n] 1-based line on which the record starts */
    int64_t skipped;      /* bad records skipped (opts.skip_bad) */
    int n_skip_msgs;      /* messages kept, at most MB_TEXTDATA_SKIP_MSGS */
    char skip_msgs[MB_TEXTDATA_SKIP_MSGS][256];
} mb_textdata;

typedef struct mb_textdata_opts {
    int skip_bad;               /* 0: the first bad record is an error */
    /* text<sep>label */
    const char *sep;            /* NULL: ";" */
    int label_first;            /* label<sep>text: the label ends at the FIRST separator */
    /* CSV */
    char delimiter;             /* 0: ',' */
    int header;                 /* the first record names the columns */
    const char *text_column;    /* column names (need header); NULL: use the index */
    const char *label_column;
    int text_index, label_index; /* 1-based column numbers; 0: "text"/"label" or 1/2 */
    /* JSONL */
    const char *text_field;     /* NULL: "text" */
    const char *label_field;    /* NULL: "label" */
} mb_textdata_opts;

void mb_textdata_init(mb_textdata *d);
void mb_textdata_free(mb_textdata *d); /* leaves d empty and reusable */

static inline const char *mb_textdata_text(const mb_textdata *d, int64_t i) { return d->buf + d->text_off[i]; }
static inline const char *mb_textdata_label(const mb_textdata *d, int64_t i) { return d->buf + d->label_off[i]; }

/* Parse src[0..len) (name is used in messages, e.g. the path). Records are
   appended to d; on error d keeps what was parsed before the bad record. */
mb_status mb_textdata_parse_sep(mb_textdata *d, const char *name, const char *src, size_t len,
                                const mb_textdata_opts *opts, mb_error *err);
mb_status mb_textdata_parse_csv(mb_textdata *d, const char *name, const char *src, size_t len,
                                const mb_textdata_opts *opts, mb_error *err);
mb_status mb_textdata_parse_jsonl(mb_textdata *d, const char *name, const char *src, size_t len,
                                  const mb_textdata_opts *opts, mb_error *err);

/* Read the file at path and parse it in the given format. */
mb_status mb_textdata_read(mb_textdata *d, mb_textdata_format format, const char *path,
                           const mb_textdata_opts *opts, mb_error *err);

/* Read a whole file into a malloc'd buffer (NUL-terminated; *len excludes it). */
mb_status mb_read_file(const char *path, char **out, size_t *len, mb_error *err);

/* FNV-1a 64-bit hash of n bytes, continuing from h (start with MB_FNV1A64_INIT).
   Used for data set content hashes (feature caches, the results store). */
#define MB_FNV1A64_INIT 0xcbf29ce484222325ULL
uint64_t mb_fnv1a64(uint64_t h, const void *data, size_t n);

#endif
