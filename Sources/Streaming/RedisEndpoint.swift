// Streaming/RedisEndpoint: where a Redis is and how to log in — parsed once from the address every
// command takes (`--redis`, $STREAMREC_REDIS, redis.address) and handed to `RedisConnection`.
//
// Accepted forms
//   HOST:PORT                                   plain TCP, database 0, no login (as before)
//   redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]  PORT defaults to 6379, DB to 0
//   rediss://…[?ca=FILE&cert=FILE&key=FILE&sni=NAME]
//                                               TLS (OpenSSL, see CRedisTLS): the server's
//                                               certificate must chain to `ca` (default: the
//                                               system's store); `cert`+`key`: client certificate
// USER and PASSWORD may be percent-encoded; `[v6addr]` for IPv6. `redis://:PASSWORD@…` is a
// password without a user (`AUTH PASSWORD`, the `requirepass` form).
//
// Secrets: `description` never contains the password (`redis://alice:***@host:6379`), and parse
// errors show the input with its password masked, so an endpoint can go into any message.

import Foundation

public struct RedisEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// TLS settings of a `rediss://` endpoint; file paths are PEM files.
    public struct TLS: Sendable, Hashable {
        /// CA bundle the server certificate must chain to; nil: the system's store.
        public var caFile: String?
        /// Client certificate and key (mutual TLS); both or neither.
        public var certificateFile: String?
        public var keyFile: String?
        /// Name sent as SNI and checked against the certificate; nil: the host.
        public var serverName: String?

        public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil, serverName: String? = nil) {
            self.caFile = caFile; self.certificateFile = certificateFile; self.keyFile = keyFile; self.serverName = serverName
        }
    }

    public var host: String
    public var port: Int
    /// Selected on every connect (`SELECT`) when not 0.
    public var database: Int
    /// ACL user (`AUTH user password`); nil: the default user.
    public var username: String?
    /// Sent with `AUTH` on every connect; nil: no AUTH.
    public var password: String?
    /// nil: plain TCP.
    public var tls: TLS?

    public init(host: String, port: Int, database: Int = 0, username: String? = nil, password: String? = nil, tls: TLS? = nil) {
        self.host = host; self.port = port; self.database = database
        self.username = username; self.password = password; self.tls = tls
    }

    public static let defaultPort = 6379

    /// `host:port` (IPv6 in brackets): the server, for messages.
    public var server: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// True for the old `HOST:PORT` kind of endpoint (printed that way).
    private var isPlain: Bool { tls == nil && username == nil && password == nil && database == 0 }

    /// The address with the password masked: `host:port` or `redis[s]://[user[:***]@]host:port[/db]`.
    public var description: String {
        if isPlain { return server }
        var login = ""
        if username != nil || password != nil {
            login = (username.map(Self.encode) ?? "") + (password == nil ? "" : ":***") + "@"
        }
        return "\(tls == nil ? "redis" : "rediss")://\(login)\(server)\(database == 0 ? "" : "/\(database)")"
    }

    /// Parses one of the forms in the file header. Errors say what is wrong and show the input
    /// with any password masked.
    public init(parsing address: String) throws(RedisError) {
        let text = address.trimmingCharacters(in: .whitespaces)
        func fail(_ what: String) -> RedisError {
            .address("Redis address '\(Self.redacted(text))' \(what); use HOST:PORT, redis://[USER[:PASSWORD]@]HOST:PORT[/DB] "
                     + "or rediss://… for TLS")
        }
        guard let schemeEnd = text.range(of: "://") else {
            let (host, port) = try Self.hostAndPort(Substring(text), defaultPort: nil, fail: fail)
            self.init(host: host, port: port)
            return
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "redis" || scheme == "rediss" else { throw fail("has the scheme '\(scheme)'") }
        var rest = text[schemeEnd.upperBound...]
        var username: String? = nil, password: String? = nil
        // The last '@': a password may hold unencoded '/', '?' or '@'.
        if let at = rest.lastIndex(of: "@") {
            let login = rest[..<at]
            rest = rest[rest.index(after: at)...]
            let user = login.firstIndex(of: ":").map { login[..<$0] } ?? login
            guard let u = String(user).removingPercentEncoding else { throw fail("has a badly percent-encoded user name") }
            username = u.isEmpty ? nil : u
            if let colon = login.firstIndex(of: ":") {
                guard let p = String(login[login.index(after: colon)...]).removingPercentEncoding else {
                    throw fail("has a badly percent-encoded password")
                }
                password = p
            }
        }
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") { query = rest[rest.index(after: q)...]; rest = rest[..<q] }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") { path = rest[rest.index(after: slash)...]; rest = rest[..<slash] }
        let (host, port) = try Self.hostAndPort(rest, defaultPort: Self.defaultPort, fail: fail)
        var database = 0
        if !path.isEmpty {
            guard let db = Int(path), db >= 0 else { throw fail("has the database '\(path)' (must be a number ≥ 0)") }
            database = db
        }
        var tls: TLS? = scheme == "rediss" ? TLS() : nil
        for item in query.split(separator: "&") where !item.isEmpty {
            let parts = item.split(separator: "=", maxSplits: 1)
            let key = String(parts[0]), value = parts.count == 2 ? String(parts[1]).removingPercentEncoding ?? "" : ""
            guard ["ca", "cert", "key", "sni"].contains(key) else {
                throw fail("has the option '\(key)' (known: ca, cert, key, sni)")
            }
            guard tls != nil else { throw fail("has the TLS option '\(key)' but is not rediss://") }
            guard !value.isEmpty else { throw fail("has an empty '\(key)'") }
            switch key {
            case "ca": tls?.caFile = value
            case "cert": tls?.certificateFile = value
            case "key": tls?.keyFile = value
            default: tls?.serverName = value
            }
        }
        self.init(host: host, port: port, database: database, username: username, password: password, tls: tls)
    }

    private static func hostAndPort(_ s: Substring, defaultPort: Int?, fail: (String) -> RedisError) throws(RedisError) -> (String, Int) {
        var host = s, portText: Substring? = nil
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { throw fail("has an unclosed '[' in the host") }
            host = s[s.index(after: s.startIndex)..<close]
            let after = s[s.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw fail("has text after the IPv6 address") }
                portText = after.dropFirst()
            }
        } else if let colon = s.lastIndex(of: ":") {
            host = s[..<colon]
            portText = s[s.index(after: colon)...]
        }
        guard !host.isEmpty else { throw fail("has no host") }
        guard let portText else {
            guard let defaultPort else { throw fail("has no port") }
            return (String(host), defaultPort)
        }
        guard let port = Int(portText), (1...65535).contains(port) else { throw fail("has the port '\(portText)' (must be 1…65535)") }
        return (String(host), port)
    }

    /// `text` with the password of a `redis[s]://user:password@` login replaced by `***`.
    public static func redacted(_ text: String) -> String {
        guard let schemeEnd = text.range(of: "://"), let at = text[schemeEnd.upperBound...].lastIndex(of: "@"),
              let colon = text[schemeEnd.upperBound..<at].firstIndex(of: ":") else { return text }
        return String(text[..<text.index(after: colon)]) + "***" + String(text[at...])
    }

    private static func encode(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .urlUserAllowed.subtracting(CharacterSet(charactersIn: ":@"))) ?? s
    }
}
