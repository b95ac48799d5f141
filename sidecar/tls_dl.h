/* SPDX-License-Identifier: MIT */
/* OpenSSL loaded on first use (dlopen), so that a keel without TLS maps none of it. */
#ifndef KEEL_TLS_DL_H
#define KEEL_TLS_DL_H

/*
 * Linking libssl and libcrypto makes about 1.7 MB of them resident in every keel, TLS or not:
 * the dynamic loader reads their symbol and relocation tables and writes their relocated data
 * at start-up. That was a third of keel's memory at rest. tls.c includes this header after the
 * OpenSSL headers: every OpenSSL function it calls (including those behind OpenSSL's macros,
 * such as SSL_CTX_set_min_proto_version -> SSL_CTX_ctrl) then calls through keel_ssl, filled by
 * keel_ssl_load() from libssl.so.3 (and the libcrypto it depends on). tls.c calls OpenSSL only
 * after keel_ssl_load() succeeded: on listeners and clusters with `tls`, on sockets with an SSL.
 * A function missing from the list below fails the link, since keel does not link OpenSSL.
 */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define KEEL_SSL_FUNCS(X)                                                                          \
    X(ASN1_STRING_get0_data)                                                                       \
    X(ASN1_STRING_length)                                                                          \
    X(BIO_free)                                                                                    \
    X(BIO_new_file)                                                                                \
    X(CRYPTO_get_ex_new_index)                                                                     \
    X(ERR_clear_error)                                                                             \
    X(ERR_error_string_n)                                                                          \
    X(ERR_get_error)                                                                               \
    X(ERR_peek_error)                                                                              \
    X(ERR_peek_last_error)                                                                         \
    X(ERR_reason_error_string)                                                                     \
    X(EVP_PKEY_free)                                                                               \
    X(GENERAL_NAMES_free)                                                                          \
    X(OPENSSL_sk_new_null)                                                                         \
    X(OPENSSL_sk_num)                                                                              \
    X(OPENSSL_sk_pop_free)                                                                         \
    X(OPENSSL_sk_push)                                                                             \
    X(OPENSSL_sk_value)                                                                            \
    X(PEM_read_bio_PrivateKey)                                                                     \
    X(PEM_read_bio_X509)                                                                           \
    X(PEM_read_bio_X509_AUX)                                                                       \
    X(SSL_CTX_ctrl)                                                                                \
    X(SSL_CTX_free)                                                                                \
    X(SSL_CTX_get_ex_data)                                                                         \
    X(SSL_CTX_load_verify_locations)                                                               \
    X(SSL_CTX_new)                                                                                 \
    X(SSL_CTX_set_alpn_select_cb)                                                                  \
    X(SSL_CTX_set_cert_cb)                                                                         \
    X(SSL_CTX_set_cipher_list)                                                                     \
    X(SSL_CTX_set_ciphersuites)                                                                    \
    X(SSL_CTX_set_client_CA_list)                                                                  \
    X(SSL_CTX_set_default_verify_paths)                                                            \
    X(SSL_CTX_set_ex_data)                                                                         \
    X(SSL_CTX_set_options)                                                                         \
    X(SSL_CTX_set_session_id_context)                                                              \
    X(SSL_CTX_set_verify)                                                                          \
    X(SSL_CTX_use_cert_and_key)                                                                    \
    X(SSL_certs_clear)                                                                             \
    X(SSL_ctrl)                                                                                    \
    X(SSL_free)                                                                                    \
    X(SSL_get0_alpn_selected)                                                                      \
    X(SSL_get0_param)                                                                              \
    X(SSL_get_SSL_CTX)                                                                             \
    X(SSL_get_error)                                                                               \
    X(SSL_get_servername)                                                                          \
    X(SSL_get_shutdown)                                                                            \
    X(SSL_get_verify_result)                                                                       \
    X(SSL_is_init_finished)                                                                        \
    X(SSL_load_client_CA_file)                                                                     \
    X(SSL_new)                                                                                     \
    X(SSL_peek_ex)                                                                                 \
    X(SSL_pending)                                                                                 \
    X(SSL_read_ex)                                                                                 \
    X(SSL_set1_host)                                                                               \
    X(SSL_set_accept_state)                                                                        \
    X(SSL_set_alpn_protos)                                                                         \
    X(SSL_set_connect_state)                                                                       \
    X(SSL_set_fd)                                                                                  \
    X(SSL_set_hostflags)                                                                           \
    X(SSL_shutdown)                                                                                \
    X(SSL_use_cert_and_key)                                                                        \
    X(SSL_write_ex)                                                                                \
    X(TLS_client_method)                                                                           \
    X(TLS_server_method)                                                                           \
    X(X509_NAME_ENTRY_get_data)                                                                    \
    X(X509_NAME_free)                                                                              \
    X(X509_NAME_get_entry)                                                                         \
    X(X509_NAME_get_index_by_NID)                                                                  \
    X(X509_VERIFY_PARAM_set1_ip_asc)                                                               \
    X(X509_check_private_key)                                                                      \
    X(X509_cmp_current_time)                                                                       \
    X(X509_free)                                                                                   \
    X(X509_get0_notAfter)                                                                          \
    X(X509_get_ext_d2i)                                                                            \
    X(X509_get_subject_name)                                                                       \
    X(X509_verify_cert_error_string)

/* The resolved functions, named as OpenSSL names them; all NULL until keel_ssl_load succeeded. */
struct keel_ssl_fns {
#define KEEL_SSL_FIELD(f) __typeof__(f) *f;
    KEEL_SSL_FUNCS(KEEL_SSL_FIELD)
#undef KEEL_SSL_FIELD
};
extern struct keel_ssl_fns keel_ssl;

/** Loads libssl and resolves every function above, once per process (thread-safe).
 *  @return 0, or KEEL_ENOTIMPL when the library or one of the functions is missing (logged). [any]
 */
int keel_ssl_load(void);

/** @return whether keel_ssl_load succeeded. [any] */
int keel_ssl_loaded(void);

#ifndef KEEL_TLS_DL_IMPL
#define ASN1_STRING_get0_data (*keel_ssl.ASN1_STRING_get0_data)
#define ASN1_STRING_length (*keel_ssl.ASN1_STRING_length)
#define BIO_free (*keel_ssl.BIO_free)
#define BIO_new_file (*keel_ssl.BIO_new_file)
#define CRYPTO_get_ex_new_index (*keel_ssl.CRYPTO_get_ex_new_index)
#define ERR_clear_error (*keel_ssl.ERR_clear_error)
#define ERR_error_string_n (*keel_ssl.ERR_error_string_n)
#define ERR_get_error (*keel_ssl.ERR_get_error)
#define ERR_peek_error (*keel_ssl.ERR_peek_error)
#define ERR_peek_last_error (*keel_ssl.ERR_peek_last_error)
#define ERR_reason_error_string (*keel_ssl.ERR_reason_error_string)
#define EVP_PKEY_free (*keel_ssl.EVP_PKEY_free)
#define GENERAL_NAMES_free (*keel_ssl.GENERAL_NAMES_free)
#define OPENSSL_sk_new_null (*keel_ssl.OPENSSL_sk_new_null)
#define OPENSSL_sk_num (*keel_ssl.OPENSSL_sk_num)
#define OPENSSL_sk_pop_free (*keel_ssl.OPENSSL_sk_pop_free)
#define OPENSSL_sk_push (*keel_ssl.OPENSSL_sk_push)
#define OPENSSL_sk_value (*keel_ssl.OPENSSL_sk_value)
#define PEM_read_bio_PrivateKey (*keel_ssl.PEM_read_bio_PrivateKey)
#define PEM_read_bio_X509 (*keel_ssl.PEM_read_bio_X509)
#define PEM_read_bio_X509_AUX (*keel_ssl.PEM_read_bio_X509_AUX)
#define SSL_CTX_ctrl (*keel_ssl.SSL_CTX_ctrl)
#define SSL_CTX_free (*keel_ssl.SSL_CTX_free)
#define SSL_CTX_get_ex_data (*keel_ssl.SSL_CTX_get_ex_data)
#define SSL_CTX_load_verify_locations (*keel_ssl.SSL_CTX_load_verify_locations)
#define SSL_CTX_new (*keel_ssl.SSL_CTX_new)
#define SSL_CTX_set_alpn_select_cb (*keel_ssl.SSL_CTX_set_alpn_select_cb)
#define SSL_CTX_set_cert_cb (*keel_ssl.SSL_CTX_set_cert_cb)
#define SSL_CTX_set_cipher_list (*keel_ssl.SSL_CTX_set_cipher_list)
#define SSL_CTX_set_ciphersuites (*keel_ssl.SSL_CTX_set_ciphersuites)
#define SSL_CTX_set_client_CA_list (*keel_ssl.SSL_CTX_set_client_CA_list)
#define SSL_CTX_set_default_verify_paths (*keel_ssl.SSL_CTX_set_default_verify_paths)
#define SSL_CTX_set_ex_data (*keel_ssl.SSL_CTX_set_ex_data)
#define SSL_CTX_set_options (*keel_ssl.SSL_CTX_set_options)
#define SSL_CTX_set_session_id_context (*keel_ssl.SSL_CTX_set_session_id_context)
#define SSL_CTX_set_verify (*keel_ssl.SSL_CTX_set_verify)
#define SSL_CTX_use_cert_and_key (*keel_ssl.SSL_CTX_use_cert_and_key)
#define SSL_certs_clear (*keel_ssl.SSL_certs_clear)
#define SSL_ctrl (*keel_ssl.SSL_ctrl)
#define SSL_free (*keel_ssl.SSL_free)
#define SSL_get0_alpn_selected (*keel_ssl.SSL_get0_alpn_selected)
#define SSL_get0_param (*keel_ssl.SSL_get0_param)
#define SSL_get_SSL_CTX (*keel_ssl.SSL_get_SSL_CTX)
#define SSL_get_error (*keel_ssl.SSL_get_error)
#define SSL_get_servername (*keel_ssl.SSL_get_servername)
#define SSL_get_shutdown (*keel_ssl.SSL_get_shutdown)
#define SSL_get_verify_result (*keel_ssl.SSL_get_verify_result)
#define SSL_is_init_finished (*keel_ssl.SSL_is_init_finished)
#define SSL_load_client_CA_file (*keel_ssl.SSL_load_client_CA_file)
#define SSL_new (*keel_ssl.SSL_new)
#define SSL_peek_ex (*keel_ssl.SSL_peek_ex)
#define SSL_pending (*keel_ssl.SSL_pending)
#define SSL_read_ex (*keel_ssl.SSL_read_ex)
#define SSL_set1_host (*keel_ssl.SSL_set1_host)
#define SSL_set_accept_state (*keel_ssl.SSL_set_accept_state)
#define SSL_set_alpn_protos (*keel_ssl.SSL_set_alpn_protos)
#define SSL_set_connect_state (*keel_ssl.SSL_set_connect_state)
#define SSL_set_fd (*keel_ssl.SSL_set_fd)
#define SSL_set_hostflags (*keel_ssl.SSL_set_hostflags)
#define SSL_shutdown (*keel_ssl.SSL_shutdown)
#define SSL_use_cert_and_key (*keel_ssl.SSL_use_cert_and_key)
#define SSL_write_ex (*keel_ssl.SSL_write_ex)
#define TLS_client_method (*keel_ssl.TLS_client_method)
#define TLS_server_method (*keel_ssl.TLS_server_method)
#define X509_NAME_ENTRY_get_data (*keel_ssl.X509_NAME_ENTRY_get_data)
#define X509_NAME_free (*keel_ssl.X509_NAME_free)
#define X509_NAME_get_entry (*keel_ssl.X509_NAME_get_entry)
#define X509_NAME_get_index_by_NID (*keel_ssl.X509_NAME_get_index_by_NID)
#define X509_VERIFY_PARAM_set1_ip_asc (*keel_ssl.X509_VERIFY_PARAM_set1_ip_asc)
#define X509_check_private_key (*keel_ssl.X509_check_private_key)
#define X509_cmp_current_time (*keel_ssl.X509_cmp_current_time)
#define X509_free (*keel_ssl.X509_free)
#define X509_get0_notAfter (*keel_ssl.X509_get0_notAfter)
#define X509_get_ext_d2i (*keel_ssl.X509_get_ext_d2i)
#define X509_get_subject_name (*keel_ssl.X509_get_subject_name)
#define X509_verify_cert_error_string (*keel_ssl.X509_verify_cert_error_string)
#endif

#endif
