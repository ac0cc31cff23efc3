// The built binary with an authenticated and a TLS Redis: the address forms, the password from
// the environment or a file, TLS files, and errors that name the server without the password.
import Foundation
import Testing
import TestSupport

@Suite("commands with Redis login and TLS (built binary)", .serialized, .timeLimit(.minutes(2)))
struct RedisLoginCommandTests {
    @Test("status logs in as an ACL user with $STREAMREC_REDIS_PASSWORD or --redis-password-file, and never prints it")
    func aclUser() throws {
        let server = try RedisServerFixture(password: "admin-pw", arguments: ["--user", "alice", "on", ">s3cret-pw", "~*", "+@all"])
        defer { server.stop() }
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let address = "redis://alice@127.0.0.1:\(server.port)"
        let env = try StreamRecBinary.run(["status", "--config", "/dev/null", "--redis", address],
                                          environment: ["STREAMREC_REDIS_PASSWORD": "s3cret-pw"])
        #expect(env.status == 0, "\(env.stderr)")
        #expect(env.stdout.contains("redis://alice:***@127.0.0.1:\(server.port)") && !(env.stdout + env.stderr).contains("s3cret"), "\(env.stdout)")

        let file = dir.appendingPathComponent("redis.password").path
        try "s3cret-pw\n".write(toFile: file, atomically: true, encoding: .utf8)
        let fromFile = try StreamRecBinary.run(["status", "--config", "/dev/null", "--redis", address, "--redis-password-file", file])
        #expect(fromFile.status == 0, "\(fromFile.stderr)")
        let viaVariable = try StreamRecBinary.run(["status", "--config", "/dev/null"],
                                                  environment: ["STREAMREC_REDIS": address, "STREAMREC_REDIS_PASSWORD_FILE": file])
        #expect(viaVariable.status == 0, "\(viaVariable.stderr)")
        #expect(try server.failedLogins() == 0)
    }

    @Test("a wrong password fails fast with the server named, what to do, and one AUTH")
    func wrongPassword() throws {
        let server = try RedisServerFixture(password: "right-pw")
        defer { server.stop() }
        let started = ContinuousClock.now
        let r = try StreamRecBinary.run(["status", "--config", "/dev/null", "--redis", "redis://127.0.0.1:\(server.port)"],
                                        environment: ["STREAMREC_REDIS_PASSWORD": "wrong-pw"], timeout: .seconds(30))
        #expect(r.status != 0 && !r.timedOut)
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(r.stderr.contains("127.0.0.1:\(server.port)") && r.stderr.contains("STREAMREC_REDIS_PASSWORD")
                && !(r.stdout + r.stderr).contains("wrong-pw"), "\(r.stderr)")
        #expect(try server.failedLogins() == 1)
        // A user with no password anywhere: said before connecting.
        let none = try StreamRecBinary.run(["status", "--config", "/dev/null", "--redis", "redis://bob@127.0.0.1:\(server.port)"])
        #expect(none.status != 0 && none.stderr.contains("no password is set"), "\(none.stderr)")
    }

    @Test("status over rediss:// with --redis-tls-ca; another CA is a verification error")
    func tls() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let certificates = try TestCertificates(in: dir.appendingPathComponent("ca"))
        let other = try TestCertificates(in: dir.appendingPathComponent("other"))
        let server = try RedisServerFixture(password: "tls-pw", tls: certificates)
        defer { server.stop() }
        let address = "rediss://127.0.0.1:\(server.port)"
        let ok = try StreamRecBinary.run(["status", "--config", "/dev/null", "--redis", address, "--redis-tls-ca", certificates.ca],
                                         environment: ["STREAMREC_REDIS_PASSWORD": "tls-pw"])
        #expect(ok.status == 0 && ok.stdout.contains("rediss://:***@127.0.0.1:\(server.port)"), "\(ok.stdout)\(ok.stderr)")
        let bad = try StreamRecBinary.run(["status", "--config", "/dev/null", "--redis", address],
                                          environment: ["STREAMREC_REDIS_PASSWORD": "tls-pw", "STREAMREC_REDIS_TLS_CA": other.ca])
        #expect(bad.status != 0 && bad.stderr.contains("certificate verification failed") && bad.stderr.contains("--redis-tls-ca"), "\(bad.stderr)")
        let plain = try StreamRecBinary.run(["status", "--config", "/dev/null", "--redis", "redis://127.0.0.1:\(server.port)",
                                             "--redis-tls-ca", certificates.ca])
        #expect(plain.status != 0 && plain.stderr.contains("not rediss://"), "\(plain.stderr)")
    }

    @Test("--kafka-config reaches librdkafka: a bad property name is librdkafka's error naming it")
    func kafkaConfig() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("client.properties").path
        try "# SASL settings\n\nsasl.password = do-not-print\nno.such.property=1\n".write(toFile: config, atomically: true, encoding: .utf8)
        let rows = dir.appendingPathComponent("rows.tsv").path
        try "1\ta\n".write(toFile: rows, atomically: true, encoding: .utf8)
        let r = try StreamRecBinary.run(["produce", "--config", "/dev/null", "--data", rows, "--format", "lines",
                                         "--bootstrap", "127.0.0.1:1", "--kafka-config", config], timeout: .seconds(30))
        #expect(r.status != 0 && r.stderr.contains("no.such.property") && !(r.stdout + r.stderr).contains("do-not-print"), "\(r.stderr)")
        try "security.protocol=PLAINTEXT\nthis line has no equals sign\n".write(toFile: config, atomically: true, encoding: .utf8)
        let malformed = try StreamRecBinary.run(["produce", "--config", "/dev/null", "--data", rows, "--bootstrap", "127.0.0.1:1",
                                                 "--kafka-config", config], timeout: .seconds(30))
        #expect(malformed.status != 0 && malformed.stderr.contains("\(config):2") && !malformed.stderr.contains("equals sign"), "\(malformed.stderr)")
    }
}
