// CRedisTLS: a TLS tunnel (OpenSSL) for hiredis connections.
//
// Why this exists: Debian bookworm's hiredis is 0.14, which has no SSL support (hiredis_ssl came
// with 1.0) and no pluggable I/O. So the TLS session lives here: `srtls_open` connects to the
// server, does the TLS handshake (SNI, certificate and host name verification, optional client
// certificate) and returns one end of a socketpair carrying the plaintext; hiredis takes that end
// with `redisConnectFd`. A detached pump thread moves bytes between the socketpair and the
// `SSL*` until either side closes, then frees everything. No pointer crosses this interface.
#ifndef STREAMREC_REDIS_TLS_TUNNEL_H
#define STREAMREC_REDIS_TLS_TUNNEL_H

#include <stddef.h>

/// Why `srtls_open` failed.
typedef enum {
    SRTLS_OK = 0,
    /// TCP connect failed (refused, unreachable, timed out): an outage, worth retrying.
    SRTLS_ERR_CONNECT = 1,
    /// TLS setup, handshake or certificate verification failed: retrying cannot help.
    SRTLS_ERR_TLS = 2,
    /// Out of memory or threads.
    SRTLS_ERR_SYSTEM = 3,
} srtls_error;

/// Connects to `host:port`, completes a TLS handshake within `timeout_ms` and returns the
/// plaintext end of the tunnel (a blocking stream socket the caller owns and closes), or -1 with
/// `*error` set and a message in `message`.
///
/// `ca_file`: PEM bundle the server certificate must chain to (NULL: the system's store).
/// `cert_file`/`key_file`: client certificate and key for mutual TLS (both or neither; NULL: none).
/// `server_name`: name sent as SNI and checked against the certificate (NULL: `host`); an IP
/// address is checked against the certificate's IP SANs.
/// Closing the returned descriptor stops the pump thread, which then closes the TLS session.
int srtls_open(const char *host, int port, const char *ca_file, const char *cert_file, const char *key_file,
               const char *server_name, int timeout_ms, srtls_error *error, char *message, size_t message_size);

/// Pump threads currently running (for tests: every tunnel's thread ends after its close).
int srtls_live_tunnels(void);

#endif
