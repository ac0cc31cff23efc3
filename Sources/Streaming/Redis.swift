// Streaming/Redis: the one Swift funnel over hiredis (synchronous API).
//
// Purpose and limits
//   * `RedisConnection`: binary-safe commands and pipelines (the RESP request formatted here in
//     one buffer, `redisAppendFormattedCommand` + `redisGetReply`), explicit `reconnect()`.
//   * Replies are converted to the `RedisReply` value enum at once and the C reply is freed;
//     no hiredis pointer leaves this file.
//   * Failures are `RedisError`: `.connect` (could not connect), `.connectionLost` (I/O error,
//     EOF or timeout; the connection is unusable until `reconnect()`), `.server` (the server
//     answered with an error reply), `.protocol` (malformed data), and the ones retrying cannot
//     fix: `.authentication` (wrong or missing credentials), `.tls` (handshake or certificate),
//     `.address` (a malformed address).
//   * Every connect and reconnect logs in (`AUTH`) and selects the database of its
//     `RedisEndpoint`; `rediss://` goes through the OpenSSL tunnel of CRedisTLS (hiredis 0.14 has
//     no TLS), which the connection only sees as a file descriptor.
//
// Threading rule
//   A connection serializes its own calls with a lock, so it is safe to share (`Sendable`), but
//   calls from several threads queue behind each other; give each busy task its own connection.

import CHiredis
import CRedisTLS
import Foundation

// MARK: - Replies and errors

/// A Redis reply. RESP3-only kinds (double, bool, map, set, push, bignum, verbatim) are decoded
/// when the hiredis in use produces them (hiredis ≥ 1.0); Debian's 0.14 speaks RESP2.
public indirect enum RedisReply: Sendable, Equatable {
    case status(String)
    case error(String)
    case integer(Int64)
    case string([UInt8])
    case array([RedisReply])
    case null
    case double(Double)
    case bool(Bool)
    case map([(RedisReply, RedisReply)])
    case set([RedisReply])
    case push([RedisReply])
    case bignum(String)
    case verbatim(String)

    public static func == (a: RedisReply, b: RedisReply) -> Bool {
        switch (a, b) {
        case let (.status(x), .status(y)), let (.error(x), .error(y)), let (.bignum(x), .bignum(y)), let (.verbatim(x), .verbatim(y)):
            return x == y
        case let (.integer(x), .integer(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)), let (.set(x), .set(y)), let (.push(x), .push(y)): return x == y
        case (.null, .null): return true
        case let (.double(x), .double(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case let (.map(x), .map(y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// Bulk string bytes (also status/verbatim text as UTF-8), else nil.
    public var bytes: [UInt8]? {
        switch self {
        case .string(let b): b
        case .status(let s), .verbatim(let s): Array(s.utf8)
        default: nil
        }
    }

    /// Bulk string or status as UTF-8 text, else nil.
    public var text: String? {
        switch self {
        case .string(let b): String(decoding: b, as: UTF8.self)
        case .status(let s), .verbatim(let s): s
        default: nil
        }
    }

    /// Integer reply, or a bulk string holding an integer, else nil.
    public var integer: Int64? {
        switch self {
        case .integer(let i): i
        case .string(let b): Int64(String(decoding: b, as: UTF8.self))
        default: nil
        }
    }

    /// Array elements (also set/push), else nil.
    public var elements: [RedisReply]? {
        switch self {
        case .array(let a), .set(let a), .push(let a): a
        default: nil
        }
    }

    public var isNull: Bool { if case .null = self { true } else { false } }

    /// Throws `.server` for an error reply, returns self otherwise.
    @discardableResult
    public func throwingIfError() throws(RedisError) -> RedisReply {
        if case .error(let message) = self { throw .server(message) }
        return self
    }
}

public enum RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Could not connect (refused, unreachable, timed out).
    case connect(host: String, port: Int, message: String)
    /// The connection failed mid-use (I/O error, EOF, timeout); call `reconnect()`.
    case connectionLost(String)
    /// The server replied with an error (`-ERR …`, `-WRONGTYPE …`).
    case server(String)
    /// Malformed protocol data or a wrapper-level misuse.
    case `protocol`(String)
    /// The server refused the login (wrong password, unknown user) or wants one (NOAUTH).
    /// `server` is the endpoint with its password masked.
    case authentication(server: String, message: String)
    /// TLS setup, handshake or certificate verification failed.
    case tls(server: String, message: String)
    /// A malformed Redis address (the message shows it with its password masked).
    case address(String)

    /// Redis is (for now) unavailable rather than refusing the command: it cannot be reached, or
    /// it answers LOADING (reading its AOF after a restart), BUSY, MASTERDOWN or TRYAGAIN. Callers
    /// wait and retry these; any other error is real.
    public var isOutage: Bool {
        switch self {
        case .connect, .connectionLost: true
        case .server(let m): ["LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN"].contains { m.hasPrefix($0) }
        case .protocol, .authentication, .tls, .address: false
        }
    }

    /// Wrong credentials, TLS or address: a person must change the settings, so retrying (even
    /// by loops that retry every other failure) only repeats the refusal.
    public var needsConfiguration: Bool {
        switch self {
        case .authentication, .tls, .address: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case let .connect(host, port, message): "cannot connect to Redis at \(host):\(port): \(message) (is redis-server running? see cluster/redis.sh)"
        case let .connectionLost(m): "Redis connection lost: \(m)"
        case let .server(m): "Redis error reply: \(m)"
        case let .protocol(m): "Redis protocol error: \(m)"
        case let .authentication(server, m):
            (m.hasPrefix("NOAUTH") ? "Redis at \(server) wants a password" : "Redis at \(server) refused the login")
                + " (\(m.hasSuffix(".") ? String(m.dropLast()) : m)). Check the password (--redis-password-file, "
                + "$STREAMREC_REDIS_PASSWORD or $STREAMREC_REDIS_PASSWORD_FILE) and the user in the redis:// address"
        case let .tls(server, m):
            "TLS with Redis at \(server) failed: \(m). Check --redis-tls-ca (the CA that signed the server's "
                + "certificate), the host name in the address, and --redis-tls-cert/--redis-tls-key if the server wants a client certificate"
        case let .address(m): m
        }
    }
}

// RESP3 reply types (hiredis ≥ 1.0); not defined by Debian's hiredis 0.14 headers.
private let replyDouble: Int32 = 7, replyBool: Int32 = 8, replyMap: Int32 = 9, replySet: Int32 = 10,
            replyAttr: Int32 = 11, replyPush: Int32 = 12, replyBignum: Int32 = 13, replyVerb: Int32 = 14

/// Copies a hiredis reply tree into a `RedisReply`.
private func convert(_ r: UnsafePointer<redisReply>) -> RedisReply {
    let reply = r.pointee
    func text() -> String {
        guard let s = reply.str else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: s, count: Int(reply.len)), as: UTF8.self)
    }
    func children() -> [RedisReply] {
        guard let e = reply.element else { return [] }
        return (0 ..< Int(reply.elements)).compactMap { i in e[i].map { convert($0) } }
    }
    switch reply.type {
    case REDIS_REPLY_STATUS: return .status(text())
    case REDIS_REPLY_ERROR: return .error(text())
    case REDIS_REPLY_INTEGER: return .integer(Int64(reply.integer))
    case REDIS_REPLY_NIL: return .null
    case REDIS_REPLY_STRING:
        guard let s = reply.str else { return .string([]) }
        return .string(Array(UnsafeRawBufferPointer(start: s, count: Int(reply.len))))
    case REDIS_REPLY_ARRAY: return .array(children())
    case replyDouble: return .double(Double(text()) ?? .nan)
    case replyBool: return .bool(reply.integer != 0)
    case replyMap, replyAttr:
        let c = children()
        return .map(stride(from: 0, to: c.count - 1, by: 2).map { (c[$0], c[$0 + 1]) })
    case replySet: return .set(children())
    case replyPush: return .push(children())
    case replyBignum: return .bignum(text())
    case replyVerb: return .verbatim(text())
    default: return .error("unknown hiredis reply type \(reply.type)")
    }
}

// MARK: - Connection

/// A synchronous Redis connection. See the file header for the threading rule.
public final class RedisConnection: @unchecked Sendable {
    /// Where it connects and how it logs in (`description` masks the password).
    public let endpoint: RedisEndpoint
    public var host: String { endpoint.host }
    public var port: Int { endpoint.port }
    public let timeout: Duration
    private var context: UnsafeMutablePointer<redisContext>?
    private let lock = NSLock()

    /// Connects, logs in and selects the database; `timeout` bounds the connect (with its TLS
    /// handshake) and every command.
    public init(address endpoint: RedisEndpoint, timeout: Duration = .seconds(5)) throws(RedisError) {
        self.endpoint = endpoint
        self.timeout = timeout
        self.context = try Self.open(endpoint, timeout: timeout)
    }

    /// A plain connection without login.
    public convenience init(host: String = "127.0.0.1", port: Int = 6379, timeout: Duration = .seconds(5)) throws(RedisError) {
        try self.init(address: RedisEndpoint(host: host, port: port), timeout: timeout)
    }

    /// Parses an address as given to `--redis` (`HOST:PORT`, `redis://…`, `rediss://…`; see `RedisEndpoint`).
    public convenience init(address: String, timeout: Duration = .seconds(5)) throws(RedisError) {
        try self.init(address: RedisEndpoint(parsing: address), timeout: timeout)
    }

    deinit { if let context { redisFree(context) } }

    private static func timeval(_ d: Duration) -> timeval {
        let (s, atto) = d.components
        return Glibc.timeval(tv_sec: Int(s), tv_usec: Int(atto / 1_000_000_000_000))
    }

    /// A connected, logged-in context for `endpoint`: the one place connections are made, so a
    /// reconnect logs in (and builds a new TLS tunnel) exactly like the first connect.
    private static func open(_ endpoint: RedisEndpoint, timeout: Duration) throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        if endpoint.username != nil && endpoint.password == nil {
            throw .authentication(server: endpoint.description, message: "the user \(endpoint.username!) has no password")
        }
        let tv = timeval(timeout)
        let c = try endpoint.tls == nil ? plainContext(endpoint, tv) : tlsContext(endpoint, timeout: timeout)
        func fail(_ error: RedisError) -> RedisError { redisFree(c); return error }
        if redisSetTimeout(c, tv) != REDIS_OK {
            throw fail(.connect(host: endpoint.host, port: endpoint.port, message: errorText(c)))
        }
        var login: [[String]] = []
        if let password = endpoint.password { login.append(["AUTH"] + (endpoint.username.map { [$0] } ?? []) + [password]) }
        if endpoint.database != 0 { login.append(["SELECT", "\(endpoint.database)"]) }
        guard !login.isEmpty else { return c }
        let replies: [RedisReply]
        do { replies = try exchange(c, login.map { $0.map { Array($0.utf8) } }) } catch { throw fail(error) }
        if endpoint.password != nil, case .error(let m) = replies[0] {
            throw fail(.authentication(server: endpoint.description, message: m))
        }
        if endpoint.database != 0, case .error(let m) = replies[replies.count - 1] {
            throw fail(.address("Redis at \(endpoint.description) refused database \(endpoint.database): \(m); "
                                + "use a database the server has (its `databases` setting)"))
        }
        return c
    }

    private static func plainContext(_ endpoint: RedisEndpoint, _ tv: timeval) throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        guard let c = redisConnectWithTimeout(endpoint.host, Int32(endpoint.port), tv) else {
            throw .connect(host: endpoint.host, port: endpoint.port, message: "out of memory")
        }
        if c.pointee.err != 0 {
            let message = errorText(c)
            redisFree(c)
            throw .connect(host: endpoint.host, port: endpoint.port, message: message)
        }
        return c
    }

    /// hiredis over the TLS tunnel's plaintext socket (`redisConnectFd` takes ownership of it).
    private static func tlsContext(_ endpoint: RedisEndpoint, timeout: Duration) throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        let tls = endpoint.tls ?? .init()
        var kind = SRTLS_OK
        var message = [CChar](repeating: 0, count: 512)
        let ms = Int32(clamping: timeout.milliseconds)
        let fd = srtls_open(endpoint.host, Int32(endpoint.port), tls.caFile, tls.certificateFile, tls.keyFile,
                            tls.serverName, max(ms, 1), &kind, &message, message.count)
        let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard fd >= 0 else {
            if kind == SRTLS_ERR_CONNECT { throw .connect(host: endpoint.host, port: endpoint.port, message: text) }
            throw .tls(server: endpoint.description, message: text)
        }
        guard let c = redisConnectFd(fd) else {
            Glibc.close(fd)
            throw .connect(host: endpoint.host, port: endpoint.port, message: "out of memory")
        }
        if c.pointee.err != 0 {
            let message = errorText(c)
            redisFree(c)
            throw .connect(host: endpoint.host, port: endpoint.port, message: message)
        }
        return c
    }

    private static func errorText(_ c: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: c.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// The funnel for context-level failures: after one, hiredis marks the context unusable.
    private static func contextError(_ c: UnsafeMutablePointer<redisContext>) -> RedisError {
        let message = errorText(c)
        switch c.pointee.err {
        case REDIS_ERR_PROTOCOL: return .protocol(message)
        default: return .connectionLost(message.isEmpty ? "error \(c.pointee.err)" : message)
        }
    }

    private func liveContext() throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        guard let c = context else { throw .connectionLost("connection closed; call reconnect()") }
        if c.pointee.err != 0 { throw Self.contextError(c) }
        return c
    }

    /// TLS tunnels whose pump thread is still running, in this process (each ends after its
    /// connection closes or reconnects): for tests and diagnostics.
    public static var openTLSTunnels: Int { Int(srtls_live_tunnels()) }

    /// True if the last operation left the connection usable.
    public var isConnected: Bool { lock.withLock { context.map { $0.pointee.err == 0 } ?? false } }

    /// Drops the current socket and connects again to the same endpoint (login and database too).
    public func reconnect() throws(RedisError) {
        lock.lock(); defer { lock.unlock() }
        if let c = context { redisFree(c); context = nil }
        context = try Self.open(endpoint, timeout: timeout)
    }

    /// Closes the connection; later calls throw `.connectionLost` until `reconnect()`.
    public func close() {
        lock.lock(); defer { lock.unlock() }
        if let c = context { redisFree(c); context = nil }
    }

    /// The RESP request for `commands` (what hiredis's argv functions would format), in one
    /// buffer: one copy of every argument instead of two, and no printf-style formatting.
    static func requestBytes(_ commands: [[[UInt8]]]) -> [UInt8] {
        var size = 0
        for args in commands { size += 16; for a in args { size += a.count + 16 } }
        var out = [UInt8]()
        out.reserveCapacity(size)
        func header(_ marker: UInt8, _ n: Int) {
            out.append(marker)
            if n == 0 { out.append(UInt8(ascii: "0")) } else {
                var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                              UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
                    (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
                var k = 0, v = n
                withUnsafeMutableBytes(of: &digits) { d in
                    while v > 0 { d[k] = UInt8(ascii: "0") + UInt8(v % 10); v /= 10; k += 1 }
                    while k > 0 { k -= 1; out.append(d[k]) }
                }
            }
            out.append(13); out.append(10)
        }
        for args in commands {
            header(UInt8(ascii: "*"), args.count)
            for a in args {
                header(UInt8(ascii: "$"), a.count)
                out.append(contentsOf: a)
                out.append(13); out.append(10)
            }
        }
        return out
    }

    /// Sends one command with binary arguments and returns its reply. An error reply throws
    /// `RedisError.server`.
    @discardableResult
    public func command(bytes args: [[UInt8]]) throws(RedisError) -> RedisReply {
        try pipeline(bytes: [args])[0].throwingIfError()
    }

    /// Sends one command with UTF-8 string arguments, e.g. `["SET", "k", "v"]`.
    @discardableResult
    public func command(_ args: [String]) throws(RedisError) -> RedisReply {
        try command(bytes: args.map { Array($0.utf8) })
    }

    /// Sends several commands in one write and reads all replies (pipelining). Error replies
    /// stay in the result as `.error` so one failed command does not hide the others; a lost
    /// connection throws.
    public func pipeline(bytes commands: [[[UInt8]]]) throws(RedisError) -> [RedisReply] {
        guard !commands.isEmpty else { return [] }
        for args in commands where args.isEmpty {
            throw RedisError.server("ERR empty command (a Redis command needs at least its name)")
        }
        lock.lock(); defer { lock.unlock() }
        let replies = try Self.exchange(try liveContext(), commands)
        // A server that wants a login this connection does not have (requirepass set, or the
        // password changed since): one clear error instead of a failed command.
        for case .error(let m) in replies where m.hasPrefix("NOAUTH") || m.hasPrefix("WRONGPASS") {
            throw .authentication(server: endpoint.description, message: m)
        }
        return replies
    }

    /// Writes `commands` in one request and reads one reply each.
    private static func exchange(_ c: UnsafeMutablePointer<redisContext>, _ commands: [[[UInt8]]]) throws(RedisError) -> [RedisReply] {
        let request = requestBytes(commands)
        let rc = request.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { redisAppendFormattedCommand(c, $0.baseAddress, $0.count) }
        }
        if rc != REDIS_OK { throw contextError(c) }
        var replies = [RedisReply]()
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var raw: UnsafeMutableRawPointer? = nil
            if redisGetReply(c, &raw) != REDIS_OK || raw == nil { throw contextError(c) }
            replies.append(convert(raw!.assumingMemoryBound(to: redisReply.self)))
            freeReplyObject(raw)
        }
        return replies
    }

    /// String-argument form of `pipeline(bytes:)`.
    public func pipeline(_ commands: [[String]]) throws(RedisError) -> [RedisReply] {
        try pipeline(bytes: commands.map { $0.map { Array($0.utf8) } })
    }
}
