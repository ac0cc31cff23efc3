// Redis addresses (redis://, rediss://), login (requirepass, ACL users) and TLS through the
// OpenSSL tunnel, against real redis-servers started per test (TestSupport's fixture).
import Foundation
import Streaming
import Testing
import TestSupport

/// The thrown error's text, or "" when `body` does not throw.
private func errorText(_ body: () throws -> Void) -> String {
    do { try body(); return "" } catch { return "\(error)" }
}

@Suite("Redis addresses")
struct RedisEndpointTests {
    @Test("HOST:PORT, redis:// and rediss:// parse into one endpoint")
    func forms() throws {
        #expect(try RedisEndpoint(parsing: "10.0.0.5:6380") == RedisEndpoint(host: "10.0.0.5", port: 6380))
        #expect(try RedisEndpoint(parsing: "redis://cache.local") == RedisEndpoint(host: "cache.local", port: 6379))
        #expect(try RedisEndpoint(parsing: "redis://alice:s3cret@h:7000/2")
                == RedisEndpoint(host: "h", port: 7000, database: 2, username: "alice", password: "s3cret"))
        #expect(try RedisEndpoint(parsing: "redis://:only-pw@h:1") == RedisEndpoint(host: "h", port: 1, password: "only-pw"))
        #expect(try RedisEndpoint(parsing: "redis://bob@h:1") == RedisEndpoint(host: "h", port: 1, username: "bob"))
        // Percent-encoding, and an unencoded '@' or '/' in the password (the last '@' ends the login).
        #expect(try RedisEndpoint(parsing: "redis://a%40b:p%3Aw@h:1").username == "a@b")
        #expect(try RedisEndpoint(parsing: "redis://a%40b:p%3Aw@h:1").password == "p:w")
        #expect(try RedisEndpoint(parsing: "redis://u:p@/x@h:1").password == "p@/x")
        #expect(try RedisEndpoint(parsing: "redis://[::1]:6390/1") == RedisEndpoint(host: "::1", port: 6390, database: 1))
        let tls = try RedisEndpoint(parsing: "REDISS://h:6380?ca=/etc/ca.pem&cert=/c.pem&key=/k.pem&sni=redis.internal")
        #expect(tls.tls == .init(caFile: "/etc/ca.pem", certificateFile: "/c.pem", keyFile: "/k.pem", serverName: "redis.internal"))
        #expect(try RedisEndpoint(parsing: "rediss://h:6380").tls == .init())
    }

    @Test("descriptions and messages mask the password")
    func redaction() throws {
        #expect(try RedisEndpoint(parsing: "10.0.0.5:6380").description == "10.0.0.5:6380")
        #expect(try RedisEndpoint(parsing: "redis://alice:hunter2@h:7000/2").description == "redis://alice:***@h:7000/2")
        #expect(try RedisEndpoint(parsing: "redis://:hunter2@h:1").description == "redis://:***@h:1")
        #expect(try RedisEndpoint(parsing: "rediss://bob@h:1?ca=/x").description == "rediss://bob@h:1")
        #expect(RedisEndpoint(host: "::1", port: 1, password: "hunter2").description == "redis://:***@[::1]:1")
        #expect(RedisEndpoint.redacted("redis://u:hunter2@h:1") == "redis://u:***@h:1")
        #expect(RedisEndpoint.redacted("h:1") == "h:1")
        let e = RedisError.authentication(server: try RedisEndpoint(parsing: "redis://u:hunter2@h:1").description, message: "WRONGPASS")
        #expect(!"\(e)".contains("hunter2") && "\(e)".contains("h:1") && "\(e)".contains("STREAMREC_REDIS_PASSWORD"))
    }

    @Test("malformed addresses are errors that say what is wrong, without the password")
    func badAddresses() {
        let cases: [(String, String)] = [
            ("nohostport", "has no port"), ("h:0", "port '0'"), ("h:x", "port 'x'"),
            ("http://u:hunter2@h:1", "scheme 'http'"), ("redis://u:hunter2@:1", "no host"),
            ("redis://u:hunter2@h:1/x", "database 'x'"), ("redis://u:hunter2@h:1?ca=/x", "not rediss://"),
            ("rediss://u:hunter2@h:1?verify=no", "option 'verify'"), ("redis://[::1:1", "unclosed"),
        ]
        for (address, expected) in cases {
            let text = errorText { _ = try RedisEndpoint(parsing: address) }
            #expect(text.contains(expected) && text.contains("HOST:PORT") && !text.contains("hunter2"), "\(address): \(text)")
            #expect(throws: RedisError.self) { try RedisEndpoint(parsing: address) }
        }
        #expect(!RedisError.address("x").isOutage && RedisError.address("x").needsConfiguration)
    }
}

@Suite("Redis login", .timeLimit(.minutes(1)))
struct RedisLoginTests {
    @Test("requirepass: the right password works on connect and reconnect, with the database selected")
    func requirePass() throws {
        let server = try RedisServerFixture(password: "pw-right")
        defer { server.stop() }
        let redis = try RedisConnection(address: "redis://:pw-right@127.0.0.1:\(server.port)/3")
        try redis.command(["SET", "k", "v"])
        // A server-side kill, then reconnect: AUTH and SELECT again.
        let admin = try RedisConnection(address: server.endpoint)
        try admin.command(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        #expect(throws: RedisError.self) { try redis.command(["PING"]) }
        try redis.reconnect()
        #expect(try redis.command(["GET", "k"]).text == "v")
        #expect(try admin.command(["GET", "k"]).isNull)  // database 0
        #expect(try server.failedLogins() == 0)
    }

    @Test("wrong password and missing login: one clear error naming the server, not an outage, one AUTH")
    func wrongPassword() throws {
        let server = try RedisServerFixture(password: "pw-right")
        defer { server.stop() }
        let started = ContinuousClock.now
        var caught: RedisError?
        do { _ = try RedisConnection(address: "redis://:pw-wrong@127.0.0.1:\(server.port)") } catch { caught = error }
        guard case .authentication(let where_, _) = caught else { Issue.record("expected .authentication, got \(String(describing: caught))"); return }
        #expect(where_ == "redis://:***@127.0.0.1:\(server.port)")
        #expect(!caught!.isOutage && caught!.needsConfiguration && !"\(caught!)".contains("pw-wrong"))
        #expect(ContinuousClock.now - started < .seconds(2))
        #expect(try server.failedLogins() == 1)

        // No password at all: the first command's NOAUTH becomes the same kind of error.
        let anonymous = try RedisConnection(host: "127.0.0.1", port: server.port)
        let text = errorText { try anonymous.command(["GET", "k"]) }
        #expect(text.contains("NOAUTH") && text.contains("127.0.0.1:\(server.port)") && text.contains("--redis-password-file"), "\(text)")
    }

    @Test("an ACL user logs in with AUTH user password; a wrong password is logged once in ACL LOG")
    func aclUser() throws {
        let server = try RedisServerFixture(password: "admin-pw", arguments: ["--user", "alice", "on", ">secret", "~*", "+@all"])
        defer { server.stop() }
        let alice = try RedisConnection(address: "redis://alice:secret@127.0.0.1:\(server.port)")
        #expect(try alice.command(["ACL", "WHOAMI"]).text == "alice")
        let text = errorText { _ = try RedisConnection(address: "redis://alice:nope@127.0.0.1:\(server.port)") }
        #expect(text.contains("refused the login") && text.contains("redis://alice:***@127.0.0.1:\(server.port)") && !text.contains("nope@"), "\(text)")
        // A user without a password is refused before any network traffic.
        #expect(errorText { _ = try RedisConnection(address: "redis://alice@127.0.0.1:\(server.port)") }.contains("has no password"))
        let log = try RedisConnection(address: server.endpoint).command(["ACL", "LOG"]).elements ?? []
        #expect(log.count == 1, "\(log)")
        #expect(try server.failedLogins() == 1)
    }
}

/// Waits until no TLS tunnel of an earlier connection is open (a released connection's pump ends
/// on its own thread, shortly after), so a test can count its own.
private func noTunnelsOpen() -> Bool { poll(for: 5) { RedisConnection.openTLSTunnels == 0 } }

@Suite("Redis over TLS (OpenSSL tunnel)", .serialized, .timeLimit(.minutes(1)))
struct RedisTLSTests {
    @Test("commands, a large pipeline and big values round-trip over rediss://; closing ends the tunnel")
    func roundTrip() throws {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let certificates = try TestCertificates(in: dir)
        let server = try RedisServerFixture(password: "tls-pw", tls: certificates)
        defer { server.stop() }
        try #require(noTunnelsOpen())
        let redis = try RedisConnection(address: "rediss://:tls-pw@127.0.0.1:\(server.port)/1?ca=\(certificates.ca)")
        #expect(RedisConnection.openTLSTunnels == 1)
        // Bigger than the pump's 64 KiB buffers in both directions.
        let big = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try redis.command(bytes: [Array("SET".utf8), Array("big".utf8), big])
        #expect(try redis.command(bytes: [Array("GET".utf8), Array("big".utf8)]) == .string(big))
        let replies = try redis.pipeline((0..<2000).map { ["INCRBY", "n", "\($0)"] })
        #expect(replies.count == 2000 && replies.last == .integer(Int64(1999 * 2000 / 2)))
        // The server drops us: the next command fails, reconnect builds a new tunnel and logs in again.
        try RedisConnection(address: server.endpoint).command(["CLIENT", "KILL", "USER", "default", "SKIPME", "yes"])
        #expect(throws: RedisError.self) { try redis.command(["PING"]) }
        try redis.reconnect()
        #expect(try redis.command(["GET", "n"]).integer == Int64(1999 * 2000 / 2))
        redis.close()
        #expect(noTunnelsOpen(), "pump threads left: \(RedisConnection.openTLSTunnels)")
    }

    @Test("a server certificate from another CA is a clear, non-retried verification error")
    func wrongCA() throws {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let certificates = try TestCertificates(in: dir.appendingPathComponent("real"))
        let other = try TestCertificates(in: dir.appendingPathComponent("other"))
        let server = try RedisServerFixture(tls: certificates)
        defer { server.stop() }
        try #require(noTunnelsOpen())
        var caught: RedisError?
        do { _ = try RedisConnection(address: RedisEndpoint(host: "127.0.0.1", port: server.port, tls: .init(caFile: other.ca))) } catch { caught = error }
        guard case .tls(_, let message) = caught else { Issue.record("expected .tls, got \(String(describing: caught))"); return }
        #expect(message.contains("certificate verification failed"), "\(message)")
        #expect(!caught!.isOutage && "\(caught!)".contains("--redis-tls-ca") && "\(caught!)".contains("127.0.0.1:\(server.port)"))
        // The certificate names 127.0.0.1 and localhost, not another host name.
        let wrongName = errorText { _ = try RedisConnection(address: RedisEndpoint(host: "127.0.0.1", port: server.port,
                                                                                   tls: .init(caFile: certificates.ca, serverName: "redis.example"))) }
        #expect(wrongName.contains("verification failed"), "\(wrongName)")
        // Plain Redis on a TLS port, and TLS on a plain port, fail instead of hanging.
        #expect(throws: RedisError.self) { try RedisConnection(host: "127.0.0.1", port: server.port, timeout: .seconds(2)).command(["PING"]) }
        let plain = try RedisServerFixture()
        defer { plain.stop() }
        #expect(errorText { _ = try RedisConnection(address: RedisEndpoint(host: "127.0.0.1", port: plain.port, tls: .init(caFile: certificates.ca)), timeout: .seconds(2)) }
                    .contains("TLS"))
        #expect(noTunnelsOpen())  // failed connects leave no pump behind
    }

    @Test("mutual TLS: with the client certificate it works; without, a clear error")
    func clientCertificate() throws {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let certificates = try TestCertificates(in: dir)
        let server = try RedisServerFixture(tls: certificates, requireClientCertificate: true)
        defer { server.stop() }
        #expect(try RedisConnection(address: server.endpoint).command(["PING"]).text == "PONG")
        let text = errorText { _ = try RedisConnection(address: RedisEndpoint(host: "127.0.0.1", port: server.port, tls: .init(caFile: certificates.ca)), timeout: .seconds(2)) }
        #expect(text.contains("requires a client certificate") && text.contains("--redis-tls-cert"), "\(text)")
        // A server that only offers client authentication ("optional") still serves us without one.
        let optional = try RedisServerFixture(tls: certificates, arguments: ["--tls-auth-clients", "optional"])
        defer { optional.stop() }
        #expect(try RedisConnection(address: RedisEndpoint(host: "127.0.0.1", port: optional.port, tls: .init(caFile: certificates.ca)))
                    .command(["PING"]).text == "PONG")
    }
}
