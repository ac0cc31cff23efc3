// Streaming/Redis: the one Swift funnel over hiredis (synchronous API).
//
// Purpose and limits
//   * `RedisConnection`: binary-safe commands and pipelines (the RESP request formatted here in
//     one buffer, `redisAppendFormattedCommand` + `redisGetReply`), explicit `reconnect()`.
//   * Replies are converted to the `RedisReply` value enum at once and the C reply is freed;
//     no hiredis pointer leaves this file.
//   * Failures are `RedisError`: `.connect` (could not connect), `.connectionLost` (I/O error,
//     EOF or timeout; the connection is unusable until `reconnect()`), `.server` (the server
//     answered with an error reply), `.protocol` (malformed data).
//
// Threading rule
//   A connection serializes its own calls with a lock, so it is safe to share (`Sendable`), but
//   calls from several threads queue behind each other; give each busy task its own connection.

import CHiredis
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

    /// Redis is (for now) unavailable rather than refusing the command: it cannot be reached, or
    /// it answers LOADING (reading its AOF after a restart), BUSY, MASTERDOWN or TRYAGAIN. Callers
    /// wait and retry these; any other error is real.
    public var isOutage: Bool {
        switch self {
        case .connect, .connectionLost: true
        case .server(let m): ["LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN"].contains { m.hasPrefix($0) }
        case .protocol: false
        }
    }

    public var description: String {
        switch self {
        case let .connect(host, port, message): "cannot connect to Redis at \(host):\(port): \(message) (is redis-server running? see cluster/redis.sh)"
        case let .connectionLost(m): "Redis connection lost: \(m)"
        case let .server(m): "Redis error reply: \(m)"
        case let .protocol(m): "Redis protocol error: \(m)"
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
    public let host: String
    public let port: Int
    public let timeout: Duration
    private var context: UnsafeMutablePointer<redisContext>?
    private let lock = NSLock()

    /// Connects (`redisConnectWithTimeout`); `timeout` bounds the connect and every command.
    public init(host: String = "127.0.0.1", port: Int = 6379, timeout: Duration = .seconds(5)) throws(RedisError) {
        self.host = host
        self.port = port
        self.timeout = timeout
        self.context = try Self.open(host: host, port: port, timeout: timeout)
    }

    /// Parses `HOST:PORT` (as given to `--redis`).
    public convenience init(address: String, timeout: Duration = .seconds(5)) throws(RedisError) {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw .protocol("Redis address must be HOST:PORT, got \"\(address)\"")
        }
        try self.init(host: String(address[..<colon]), port: port, timeout: timeout)
    }

    deinit { if let context { redisFree(context) } }

    private static func timeval(_ d: Duration) -> timeval {
        let (s, atto) = d.components
        return Glibc.timeval(tv_sec: Int(s), tv_usec: Int(atto / 1_000_000_000_000))
    }

    private static func open(host: String, port: Int, timeout: Duration) throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        let tv = timeval(timeout)
        guard let c = redisConnectWithTimeout(host, Int32(port), tv) else {
            throw .connect(host: host, port: port, message: "out of memory")
        }
        if c.pointee.err != 0 {
            let message = errorText(c)
            redisFree(c)
            throw .connect(host: host, port: port, message: message)
        }
        if redisSetTimeout(c, tv) != REDIS_OK {
            let message = errorText(c)
            redisFree(c)
            throw .connect(host: host, port: port, message: message)
        }
        return c
    }

    private static func errorText(_ c: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: c.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// The funnel for context-level failures: after one, hiredis marks the context unusable.
    private func contextError(_ c: UnsafeMutablePointer<redisContext>) -> RedisError {
        let message = Self.errorText(c)
        switch c.pointee.err {
        case REDIS_ERR_PROTOCOL: return .protocol(message)
        default: return .connectionLost(message.isEmpty ? "error \(c.pointee.err)" : message)
        }
    }

    private func liveContext() throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        guard let c = context else { throw .connectionLost("connection closed; call reconnect()") }
        if c.pointee.err != 0 { throw contextError(c) }
        return c
    }

    /// True if the last operation left the connection usable.
    public var isConnected: Bool { lock.withLock { context.map { $0.pointee.err == 0 } ?? false } }

    /// Drops the current socket and connects again to the same address.
    public func reconnect() throws(RedisError) {
        lock.lock(); defer { lock.unlock() }
        if let c = context { redisFree(c); context = nil }
        context = try Self.open(host: host, port: port, timeout: timeout)
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
        let request = Self.requestBytes(commands)
        lock.lock(); defer { lock.unlock() }
        let c = try liveContext()
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
