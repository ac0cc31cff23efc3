// Redis smoke tests against a real redis-server started per test (see Support.swift).
import Foundation
import Streaming
import Testing
import TestSupport

@Suite("Redis funnel (hiredis)", .timeLimit(.minutes(1)))
struct RedisTests {
    @Test("SET/GET round-trips binary bytes including NUL")
    func binaryRoundTrip() throws {
        let server = try RedisServerFixture()
        defer { server.stop() }
        let redis = try RedisConnection(host: "127.0.0.1", port: server.port)
        let value: [UInt8] = [0x00, 0x41, 0x00, 0xFF, 0x0D, 0x0A, 0x00]
        let key: [UInt8] = Array("bin\u{0}key".utf8)
        #expect(try redis.command(bytes: [Array("SET".utf8), key, value]) == .status("OK"))
        #expect(try redis.command(bytes: [Array("GET".utf8), key]) == .string(value))
        #expect(try redis.command(bytes: [Array("STRLEN".utf8), key]) == .integer(Int64(value.count)))
        #expect(try redis.command(["GET", "missing"]).isNull)
    }

    @Test("INCR counts and a pipeline returns every reply in order")
    func incrAndPipeline() throws {
        let server = try RedisServerFixture()
        defer { server.stop() }
        let redis = try RedisConnection(host: "127.0.0.1", port: server.port)
        #expect(try redis.command(["INCR", "n"]) == .integer(1))
        #expect(try redis.command(["INCRBY", "n", "41"]).integer == 42)

        let replies = try redis.pipeline([
            ["SET", "a", "1"], ["INCR", "a"], ["HSET", "h", "f", "v"], ["INCR", "h"], ["MGET", "a", "nope"],
        ])
        #expect(replies.count == 5)
        #expect(replies[0] == .status("OK"))
        #expect(replies[1] == .integer(2))
        #expect(replies[2] == .integer(1))
        if case .error(let message) = replies[3] { #expect(message.contains("WRONGTYPE")) } else {
            Issue.record("expected an error reply in the pipeline, got \(replies[3])")
        }
        #expect(replies[4] == .array([.string(Array("2".utf8)), .null]))
        // The connection is still usable after an error reply inside a pipeline.
        #expect(try redis.command(["GET", "a"]).text == "2")
    }

    @Test("XADD/XRANGE round trip")
    func streams() throws {
        let server = try RedisServerFixture()
        defer { server.stop() }
        let redis = try RedisConnection(host: "127.0.0.1", port: server.port)
        let payload: [UInt8] = [1, 0, 2, 0, 3]
        var ids: [String] = []
        for i in 0 ..< 3 {
            let reply = try redis.command(bytes: [Array("XADD".utf8), Array("s".utf8), Array("*".utf8),
                                                  Array("i".utf8), Array("\(i)".utf8), Array("blob".utf8), payload])
            ids.append(try #require(reply.text))
        }
        #expect(try redis.command(["XLEN", "s"]) == .integer(3))
        let entries = try #require(try redis.command(["XRANGE", "s", "-", "+"]).elements)
        #expect(entries.count == 3)
        for (i, entry) in entries.enumerated() {
            let parts = try #require(entry.elements)
            #expect(parts[0].text == ids[i])
            let fields = try #require(parts[1].elements)
            #expect(fields.map { $0.bytes ?? [] } == [Array("i".utf8), Array("\(i)".utf8), Array("blob".utf8), payload])
        }
    }

    @Test("server error replies throw RedisError.server")
    func serverError() throws {
        let server = try RedisServerFixture()
        defer { server.stop() }
        let redis = try RedisConnection(host: "127.0.0.1", port: server.port)
        try redis.command(["SET", "s", "not a number"])
        #expect {
            try redis.command(["INCR", "s"])
        } throws: { error in
            guard case RedisError.server(let message) = error else { return false }
            return message.contains("not an integer")
        }
        #expect(throws: RedisError.self) { try redis.command(["NO_SUCH_COMMAND"]) }
        #expect(try redis.command(["PING"]) == .status("PONG"))
    }

    @Test("connecting to a closed port throws RedisError.connect")
    func connectionRefused() throws {
        let port = try freeLoopbackPort()
        #expect {
            _ = try RedisConnection(host: "127.0.0.1", port: port, timeout: .seconds(2))
        } throws: { error in
            guard case RedisError.connect(_, let p, _) = error else { return false }
            return p == port
        }
    }

    @Test("a killed connection throws connectionLost, then reconnect() recovers")
    func reconnect() throws {
        let server = try RedisServerFixture()
        defer { server.stop() }
        let victim = try RedisConnection(host: "127.0.0.1", port: server.port)
        let admin = try RedisConnection(host: "127.0.0.1", port: server.port)
        let id = try #require(try victim.command(["CLIENT", "ID"]).integer)
        #expect(try admin.command(["CLIENT", "KILL", "ID", "\(id)"]) == .integer(1))
        #expect {
            try victim.command(["PING"])
        } throws: { error in
            if case RedisError.connectionLost = error { return true } else { return false }
        }
        #expect(!victim.isConnected)
        try victim.reconnect()
        #expect(victim.isConnected)
        #expect(try victim.command(["PING"]) == .status("PONG"))
    }
}
