/* store_pg.c: the results store's statements on PostgreSQL, over libpq.
 *
 * The statement interface of store_db.h: runtime/store.c prepares its query
 * text (?N parameters, rewritten here to $N), binds values as text and steps
 * through the rows of the result, as it does with SQLite. Every statement is
 * sent with PQexecParams (parameters apart from the query text); the server
 * infers their types from the query.
 *
 * The password comes from libpq's usual places (PGPASSWORD, ~/.pgpass, a
 * service file): a URL that carries one is refused, since it would show in
 * process listings and logs, and the URL shown in messages is rebuilt from the
 * connection's user, host, port and database.
 *
 * Connection loss (a server restart): statements fail with DB_ERR_CONNECTION;
 * store.c reconnects with pg_reconnect and runs the whole transaction again.
 * Whether a COMMIT whose answer was lost went through is asked of the server
 * with txid_status() on the transaction id that pg_begin recorded, so that a
 * retry neither loses nor repeats rows.
 */
#include "store_db.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pg_conn {
    PGconn *conn;
    char *conninfo;     /* what was given (no password in it) */
    char msg[512];      /* the last error, one line */
    db_errkind kind;
    int64_t changes;
    int in_txn;
    char xid[32];       /* txid_current() of the open (or last) transaction */
    int commit_lost;    /* the connection died during COMMIT */
};

struct pg_stmt {
    pg_conn *c;
    char *sql;
    int nparams;
    char **values;
    PGresult *res;
    int row, nrows;
};

/* libpq's message on one line: "FATAL:  password authentication failed ..." */
static void set_msg(pg_conn *c, const char *text) {
    if (!text || !*text) text = "unknown error";
    size_t j = 0;
    int space = 0;
    for (const char *p = text; *p && j + 1 < sizeof c->msg; p++) {
        if (*p == '\n' || *p == '\t' || *p == ' ') {
            space = 1;
            continue;
        }
        if (space && j > 0) c->msg[j++] = ' ';
        space = 0;
        if (j + 1 < sizeof c->msg) c->msg[j++] = *p;
    }
    c->msg[j] = '\0';
}

static int connection_state(const char *sqlstate) {
    /* 08xxx connection exceptions; 57P01 admin shutdown, 57P02 crash
       shutdown, 57P03 cannot connect now (the server is starting). */
    return sqlstate && (strncmp(sqlstate, "08", 2) == 0 || strcmp(sqlstate, "57P01") == 0 ||
                        strcmp(sqlstate, "57P02") == 0 || strcmp(sqlstate, "57P03") == 0);
}

/* Record the error of a failed result (res may be NULL: no answer). */
static void note_error(pg_conn *c, PGresult *res) {
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    set_msg(c, res && PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res) : PQerrorMessage(c->conn));
    if (PQstatus(c->conn) != CONNECTION_OK || connection_state(state)) c->kind = DB_ERR_CONNECTION;
    else if (state && strcmp(state, "23503") == 0) c->kind = DB_ERR_FOREIGN_KEY;
    else if (state && strcmp(state, "23505") == 0) c->kind = DB_ERR_UNIQUE;
    else c->kind = DB_ERR_OTHER;
}

static PGconn *open_conn(const char *conninfo) {
    /* Defaults first: what the URL says overrides them. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {"10", "moonbert", conninfo, NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn && PQstatus(conn) == CONNECTION_OK) {
        /* Quiet NOTICEs (e.g. "relation already exists, skipping"). */
        PQclear(PQexec(conn, "SET client_min_messages = warning"));
    }
    return conn;
}

pg_conn *pg_connect(const char *url, char *display, size_t n, mb_error *err) {
    PQconninfoOption *opts = PQconninfoParse(url, NULL);
    if (!opts) {
        mb_fail(err, MB_ERR_ARG, "%s: not a PostgreSQL URL (postgresql://user@host:port/database)", url);
        return NULL;
    }
    int has_password = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && *o->val) has_password = 1;
    PQconninfoFree(opts);
    if (has_password) {
        mb_fail(err, MB_ERR_ARG,
                "the store URL holds a password: give it in PGPASSWORD or ~/.pgpass instead (a URL shows in "
                "process listings and logs)");
        return NULL;
    }
    pg_conn *c = calloc(1, sizeof *c);
    if (!c || !(c->conninfo = strdup(url))) {
        free(c);
        mb_fail(err, MB_ERR_NOMEM, "out of memory connecting to %s", url);
        return NULL;
    }
    c->conn = open_conn(url);
    if (!c->conn || PQstatus(c->conn) != CONNECTION_OK) {
        set_msg(c, c->conn ? PQerrorMessage(c->conn) : "out of memory");
        mb_fail(err, MB_ERR_IO, "%s: cannot connect to the results store: %s", url, c->msg);
        pg_disconnect(c);
        return NULL;
    }
    snprintf(display, n, "postgresql://%s@%s:%s/%s", PQuser(c->conn), PQhost(c->conn), PQport(c->conn),
             PQdb(c->conn));
    return c;
}

void pg_disconnect(pg_conn *c) {
    if (!c) return;
    if (c->conn) PQfinish(c->conn);
    free(c->conninfo);
    free(c);
}

int pg_connected(pg_conn *c) { return c->conn && PQstatus(c->conn) == CONNECTION_OK; }

int pg_reconnect(pg_conn *c) {
    if (c->conn) PQfinish(c->conn);
    c->conn = open_conn(c->conninfo);
    c->in_txn = 0;
    if (!c->conn || PQstatus(c->conn) != CONNECTION_OK) {
        set_msg(c, c->conn ? PQerrorMessage(c->conn) : "out of memory");
        c->kind = DB_ERR_CONNECTION;
        return 0;
    }
    return 1;
}

const char *pg_errmsg(pg_conn *c) { return c->msg; }
db_errkind pg_errkind(pg_conn *c) { return c->kind; }
void pg_clear_error(pg_conn *c) {
    c->kind = DB_ERR_OTHER;
    c->msg[0] = '\0';
}
int64_t pg_changes(pg_conn *c) { return c->changes; }
int pg_in_transaction(pg_conn *c) { return c->in_txn; }
int pg_commit_was_lost(pg_conn *c) { return c->commit_lost; }

int pg_exec(pg_conn *c, const char *sql) {
    PGresult *res = PQexec(c->conn, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) note_error(c, res);
    PQclear(res);
    return ok ? 0 : -1;
}

int pg_begin(pg_conn *c) {
    c->commit_lost = 0;
    /* One round trip: the result is the last statement's. */
    PGresult *res = PQexec(c->conn, "BEGIN; SELECT txid_current()");
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        note_error(c, res);
        PQclear(res);
        return -1;
    }
    snprintf(c->xid, sizeof c->xid, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    c->in_txn = 1;
    return 0;
}

int pg_commit(pg_conn *c) {
    PGresult *res = PQexec(c->conn, "COMMIT");
    int ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok) {
        note_error(c, res);
        if (c->kind == DB_ERR_CONNECTION) c->commit_lost = 1;
    }
    PQclear(res);
    c->in_txn = 0;
    return ok ? 0 : -1;
}

void pg_rollback(pg_conn *c) {
    if (c->in_txn && pg_connected(c)) PQclear(PQexec(c->conn, "ROLLBACK"));
    c->in_txn = 0;
}

int pg_commit_outcome(pg_conn *c) {
    if (!pg_connected(c)) return -1;
    const char *vals[1] = {c->xid};
    PGresult *res = PQexecParams(c->conn, "SELECT txid_status($1::bigint)", 1, NULL, vals, NULL, NULL, 0);
    int out = -1;
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        out = !PQgetisnull(res, 0, 0) && strcmp(PQgetvalue(res, 0, 0), "committed") == 0;
    else
        note_error(c, res);
    PQclear(res);
    if (out >= 0) c->commit_lost = 0;
    return out;
}

/* ?N -> $N outside quoted text; the highest N is the parameter count. And
   COLLATE BINARY, SQLite's byte order, -> COLLATE "C", PostgreSQL's (store_db.h). */
#define COLLATE_BINARY "COLLATE BINARY"
static int is_name_char(char ch) { return ch == '_' || (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z'); }

pg_stmt *pg_prepare(pg_conn *c, const char *sql, mb_error *err) {
    pg_stmt *st = calloc(1, sizeof *st);
    size_t n = strlen(sql);
    if (st) st->sql = malloc(n + 1);
    if (!st || !st->sql) {
        free(st);
        mb_fail(err, MB_ERR_NOMEM, "out of memory preparing a statement");
        return NULL;
    }
    char quote = 0;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = sql[i];
        if (quote) {
            if (ch == quote) quote = 0;
        } else if (ch == '\'' || ch == '"') {
            quote = ch;
        } else if (strncmp(sql + i, COLLATE_BINARY, sizeof COLLATE_BINARY - 1) == 0 &&
                   !is_name_char(sql[i + sizeof COLLATE_BINARY - 1]) && (i == 0 || !is_name_char(sql[i - 1]))) {
            memcpy(st->sql + j, "COLLATE \"C\"", 11); /* shorter: the buffer holds it */
            j += 11;
            i += sizeof COLLATE_BINARY - 2;
            continue;
        } else if (ch == '?' && i + 1 < n && sql[i + 1] >= '0' && sql[i + 1] <= '9') {
            ch = '$';
            int k = atoi(sql + i + 1);
            if (k > st->nparams) st->nparams = k;
        }
        st->sql[j++] = ch;
    }
    st->sql[j] = '\0';
    st->c = c;
    st->row = -1;
    if (st->nparams > 0 && !(st->values = calloc((size_t)st->nparams, sizeof *st->values))) {
        pg_finalize(st);
        mb_fail(err, MB_ERR_NOMEM, "out of memory preparing a statement");
        return NULL;
    }
    return st;
}

void pg_reset(pg_stmt *st) {
    if (!st) return;
    PQclear(st->res);
    st->res = NULL;
    st->row = -1;
    for (int i = 0; i < st->nparams; i++) {
        free(st->values[i]);
        st->values[i] = NULL;
    }
}

void pg_finalize(pg_stmt *st) {
    if (!st) return;
    pg_reset(st);
    free(st->values);
    free(st->sql);
    free(st);
}

void pg_bind(pg_stmt *st, int i, const char *text) {
    if (i < 1 || i > st->nparams) return;
    free(st->values[i - 1]);
    st->values[i - 1] = text ? strdup(text) : NULL;
}

int pg_step(pg_stmt *st) {
    pg_conn *c = st->c;
    if (!st->res) {
        st->res = PQexecParams(c->conn, st->sql, st->nparams, NULL, (const char *const *)st->values, NULL, NULL, 0);
        ExecStatusType rs = st->res ? PQresultStatus(st->res) : PGRES_FATAL_ERROR;
        if (rs != PGRES_TUPLES_OK && rs != PGRES_COMMAND_OK) {
            note_error(c, st->res);
            PQclear(st->res);
            st->res = NULL;
            return DB_FAIL;
        }
        const char *t = PQcmdTuples(st->res);
        c->changes = t && *t ? strtoll(t, NULL, 10) : 0;
        st->nrows = rs == PGRES_TUPLES_OK ? PQntuples(st->res) : 0;
        st->row = -1;
    }
    if (st->row + 1 < st->nrows) {
        st->row++;
        return DB_ROW;
    }
    st->row = st->nrows;
    return DB_DONE;
}

int pg_isnull(pg_stmt *st, int col) {
    if (!st->res || st->row < 0 || st->row >= st->nrows || col >= PQnfields(st->res)) return 1;
    return PQgetisnull(st->res, st->row, col);
}

const char *pg_value(pg_stmt *st, int col) {
    if (pg_isnull(st, col)) return NULL;
    return PQgetvalue(st->res, st->row, col);
}
