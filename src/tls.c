/* TLS on memory BIOs (see tls.h). */
#include "tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ringcast/alloc.h"

/* OpenSSL's reason for the last error (a library message: never key material), queue cleared. */
static void last_error(char *err, size_t errlen, const char *what, const char *path)
{
    unsigned long e = ERR_peek_last_error();
    char reason[200] = "unknown error";
    if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    snprintf(err, errlen, "%s %s: %s", what, path, reason);
}

/* A file that cannot be opened is named with the system's reason, not OpenSSL's "system lib". */
static bool readable(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

static int64_t expiry_of(SSL_CTX *ctx)
{
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    struct tm tm;
    if (!cert || !ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

/*
 * The write BIO: OpenSSL writes each record once, straight into the connection's `next` buffer.
 * A memory BIO would copy it in (zeroing what it grows), and out again into the send buffer:
 * measured, that was a quarter of a TLS relay's time.
 */
static int out_write(BIO *b, const char *data, int len)
{
    struct tls_conn *c = BIO_get_data(b);
    if (len <= 0)
        return 0;
    if ((size_t)c->next_len + (size_t)len > c->next_cap) {
        size_t cap = c->next_cap ? c->next_cap : 4096;
        while (cap < (size_t)c->next_len + (size_t)len)
            cap *= 2;
        if (cap > UINT32_MAX)
            return -1;
        uint8_t *grown = rc_realloc(c->next, cap);
        if (!grown)
            return -1;
        c->next = grown;
        c->next_cap = (uint32_t)cap;
    }
    memcpy(c->next + c->next_len, data, (size_t)len);
    c->next_len += (uint32_t)len;
    return len;
}

static long out_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    const struct tls_conn *c = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
    case BIO_CTRL_WPENDING:
        return c ? (long)c->next_len : 0;
    default:
        return 0;
    }
}

static BIO_METHOD *out_method_new(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ringcast-out");
    if (m && (!BIO_meth_set_write(m, out_write) || !BIO_meth_set_ctrl(m, out_ctrl))) {
        BIO_meth_free(m);
        m = NULL;
    }
    return m;
}

int tls_ctx_load(struct tls_ctx *t, const struct opts *o, char *err, size_t errlen)
{
    if (!t->out_method && !(t->out_method = out_method_new())) {
        last_error(err, errlen, "cannot create a TLS output", "");
        return -1;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        last_error(err, errlen, "cannot create a TLS context", "");
        return -1;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* No renegotiation (a client could make us redo handshakes at will), no compression. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Idle connections give their 16 KiB record buffers back: memory stays per active client. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    int ok = readable("--tls-cert", o->tls_cert, err, errlen) &&
             readable("--tls-key", o->tls_key, err, errlen) &&
             (!o->tls_client_ca[0] || readable("--tls-client-ca", o->tls_client_ca, err, errlen));
    if (!ok) {
        /* named above */
    } else if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert) != 1) {
        last_error(err, errlen, "--tls-cert", o->tls_cert);
        ok = 0;
    } else if (SSL_CTX_use_PrivateKey_file(ctx, o->tls_key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            snprintf(err, errlen, "--tls-key %s does not match the certificate of --tls-cert %s",
                     o->tls_key, o->tls_cert);
        } else {
            last_error(err, errlen, "--tls-key", o->tls_key);
        }
        ok = 0;
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "--tls-key %s does not match the certificate of --tls-cert %s",
                 o->tls_key, o->tls_cert);
        ok = 0;
    }
    if (ok && o->tls_client_ca[0]) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->tls_client_ca);
        if (!names || SSL_CTX_load_verify_locations(ctx, o->tls_client_ca, NULL) != 1) {
            last_error(err, errlen, "--tls-client-ca", o->tls_client_ca);
            if (names)
                sk_X509_NAME_pop_free(names, X509_NAME_free);
            ok = 0;
        } else {
            SSL_CTX_set_client_CA_list(ctx, names); /* the context owns them now */
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
    }
    if (!ok) {
        SSL_CTX_free(ctx);
        return -1;
    }
    tls_ctx_free(t);
    t->ctx = ctx;
    t->not_after = expiry_of(ctx);
    t->verify_clients = o->tls_client_ca[0] != '\0';
    return 0;
}

void tls_ctx_free(struct tls_ctx *t)
{
    SSL_CTX_free(t->ctx); /* connections still using it hold their own reference */
    t->ctx = NULL;
}

void tls_ctx_destroy(struct tls_ctx *t)
{
    tls_ctx_free(t);
    BIO_meth_free(t->out_method); /* after every connection: their write BIOs use it */
    t->out_method = NULL;
}

void tls_ktls_probe(char *out, size_t len)
{
    /* The kernel lists the upper-layer protocols it has loaded; "tls" is kTLS. */
    char ulp[128] = "";
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");
    if (f) {
        if (!fgets(ulp, sizeof(ulp), f))
            ulp[0] = '\0';
        fclose(f);
    }
    bool kernel = strstr(ulp, "tls") != NULL;
#ifdef SSL_OP_ENABLE_KTLS
    bool openssl = true;
#else
    bool openssl = false;
#endif
    snprintf(out, len,
             "TLS: kTLS %s (kernel tls ULP: %s; OpenSSL SSL_OP_ENABLE_KTLS: %s); records are "
             "encrypted in user space",
             kernel && openssl ? "possible but not used" : "unavailable",
             kernel ? "loaded" : "not loaded", openssl ? "yes" : "no");
}

int tls_conn_init(struct tls_conn *c, const struct tls_ctx *t)
{
    memset(c, 0, sizeof(*c));
    c->ssl = SSL_new(t->ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(t->out_method);
    if (c->wbio) {
        BIO_set_data(c->wbio, c);
        BIO_set_init(c->wbio, 1);
    }
    if (!c->ssl || !c->rbio || !c->wbio) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        SSL_free(c->ssl);
        memset(c, 0, sizeof(*c));
        ERR_clear_error();
        return -1;
    }
    /* An empty memory BIO says "retry", not "end of file". */
    BIO_set_mem_eof_return(c->rbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio); /* the SSL owns both from here */
    SSL_set_accept_state(c->ssl);
    return 0;
}

void tls_conn_free(struct tls_conn *c)
{
    SSL_free(c->ssl);
    rc_free(c->out);
    rc_free(c->next);
    memset(c, 0, sizeof(*c));
}

/* What went wrong with a handshake, from OpenSSL's error and the verification result. */
static enum tls_failure failure_of(const struct tls_conn *c)
{
    unsigned long e = ERR_peek_last_error();
    int reason = ERR_GET_REASON(e);
    enum tls_failure why = TLSF_PROTOCOL;
    if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE ||
        reason == SSL_R_CERTIFICATE_VERIFY_FAILED || SSL_get_verify_result(c->ssl) != X509_V_OK)
        why = TLSF_CLIENT_CERT;
    ERR_clear_error();
    return why;
}

enum tls_step tls_conn_feed(struct tls_conn *c, const uint8_t *p, size_t len,
                            bool (*plain)(void *ctx, const uint8_t *p, size_t len), void *ctx,
                            enum tls_failure *why)
{
    if (len && BIO_write(c->rbio, p, (int)len) != (int)len) {
        *why = TLSF_PROTOCOL;
        ERR_clear_error();
        return TLS_STEP_FAILED;
    }
    if (!c->established) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return TLS_STEP_MORE;
            *why = failure_of(c);
            return TLS_STEP_FAILED;
        }
        c->established = true;
        return TLS_STEP_DONE; /* the caller settles the client's role before any data */
    }
    /* Decrypt what is whole; a record cut by the recv waits in the read BIO. */
    uint8_t buf[16384];
    for (;;) {
        size_t got = 0;
        if (SSL_read_ex(c->ssl, buf, sizeof(buf), &got) == 1) {
            if (!plain(ctx, buf, got))
                break;
            continue;
        }
        int e = SSL_get_error(c->ssl, 0);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            ERR_clear_error();
            return TLS_STEP_CLOSED;
        }
        *why = TLSF_PROTOCOL;
        ERR_clear_error();
        return TLS_STEP_FAILED;
    }
    return TLS_STEP_MORE;
}

int tls_conn_encrypt(struct tls_conn *c, const void *p, size_t len)
{
    /* Room for the records at once: one allocation, not a doubling per record. */
    size_t need = c->next_len + len + (len / 16384 + 1) * 64;
    if (need > c->next_cap && need <= UINT32_MAX) {
        uint8_t *grown = rc_realloc(c->next, need);
        if (!grown)
            return -1;
        c->next = grown;
        c->next_cap = (uint32_t)need;
    }
    size_t done = 0;
    /* A memory BIO takes everything: one call encrypts it all into records. */
    if (len && SSL_write_ex(c->ssl, p, len, &done) != 1) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

void tls_conn_close_notify(struct tls_conn *c)
{
    if (c->closing || !c->established)
        return;
    c->closing = true;
    SSL_shutdown(c->ssl);
    ERR_clear_error();
}

int64_t tls_conn_take_out(struct tls_conn *c)
{
    if (c->sending)
        return 0;
    if (c->out && c->out_off < c->out_len)
        return c->out_len - c->out_off;
    /* out is all sent: what OpenSSL wrote since becomes out. The emptied buffer is freed, not
     * kept: an idle connection holds none. */
    rc_free(c->out);
    c->out = c->next;
    c->out_len = c->next_len;
    c->out_off = 0;
    c->next = NULL;
    c->next_len = c->next_cap = 0;
    if (!c->out_len) {
        rc_free(c->out);
        c->out = NULL;
    }
    return c->out_len;
}

int tls_conn_peer_role(const struct tls_conn *c)
{
    X509 *cert = SSL_get0_peer_certificate(c->ssl);
    if (!cert)
        return 0;
    X509_NAME *name = X509_get_subject_name(cert);
    int at = X509_NAME_get_index_by_NID(name, NID_organizationalUnitName, -1);
    if (at < 0)
        return 0;
    const ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at));
    const char *s = (const char *)ASN1_STRING_get0_data(v);
    int n = ASN1_STRING_length(v);
    static const char *const roles[] = {
        [ROLE_BOTH] = "both", [ROLE_PUB] = "pub", [ROLE_SUB] = "sub"};
    for (int r = 0; r < 3; r++)
        if ((size_t)n == strlen(roles[r]) && !memcmp(s, roles[r], (size_t)n))
            return 1 + r;
    return 0;
}

const char *tls_conn_version(const struct tls_conn *c)
{
    return SSL_get_version(c->ssl);
}

const char *tls_failure_text(enum tls_failure f)
{
    switch (f) {
    case TLSF_PROTOCOL:
        return "handshake failed";
    case TLSF_TIMEOUT:
        return "handshake timeout";
    case TLSF_BUSY:
        return "too many handshakes";
    case TLSF_CLIENT_CERT:
        return "client certificate refused";
    case TLSF_ROLE:
        return "certificate role not allowed here";
    case TLSF__COUNT:
        break;
    }
    return "unknown";
}
