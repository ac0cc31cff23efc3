import TestSupport
import Foundation
import Logging
import Observability
import Testing
import Hummingbird
import HummingbirdTesting
import Checkpoint
@testable import Serving
#if canImport(Glibc)
import Glibc
#endif

/// A raw TCP client, so a test can send exactly the bytes a slow or hostile client would.
final class RawClient {
    let fd: Int32
    private(set) var received = ""

    /// Connects to `host:port` (each address getaddrinfo gives, in order).
    init(host: String = "127.0.0.1", port: Int) throws {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else { throw POSIXError(.EHOSTUNREACH) }
        defer { freeaddrinfo(list) }
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let ai = cursor {
            let s = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
            if s >= 0 && connect(s, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 {
                // Reads wait at most 50 ms, so `waitForClose` can poll against its deadline.
                var tv = timeval(tv_sec: 0, tv_usec: 50_000)
                setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                fd = s
                return
            }
            if s >= 0 { close(s) }
            cursor = ai.pointee.ai_next
        }
        throw POSIXError(.ECONNREFUSED)
    }

    deinit { close(fd) }

    /// Sends `text`; false once the server has closed the connection.
    @discardableResult
    func send(_ text: String) -> Bool {
        Array(text.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } >= 0
    }

    /// Reads until the server closes the connection (EOF or reset) or `seconds` pass; true if it closed.
    /// `whileWaiting` runs between reads (e.g. to trickle bytes).
    func waitForClose(within seconds: Double, whileWaiting: () -> Void = {}) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 { received += String(decoding: buffer[0..<n], as: UTF8.self); continue }
            if n == 0 { return true }
            if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { return true }
            whileWaiting()
        }
        return false
    }

    /// Reads until `received` contains `marker` or `seconds` pass.
    func waitFor(_ marker: String, within seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline, !received.contains(marker) {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 { received += String(decoding: buffer[0..<n], as: UTF8.self) } else if n == 0 { break }
        }
        return received.contains(marker)
    }
}

private func liveApp(_ fx: TinyModelFixture, timeouts: ConnectionTimeouts,
                     limits: RequestLimits = RequestLimits(maxRows: 100, maxBodyBytes: 4000))
    -> (app: some ApplicationProtocol, state: ServingState) {
    let settings = ServeSettings(checkpoints: fx.root, host: "127.0.0.1", port: 0, limits: limits,
                                 pollInterval: .milliseconds(50), timeouts: timeouts)
    let (app, state, _) = buildServingApplication(settings: settings, logger: Logger(label: "serve", factory: { _ in SwiftLogNoOpLogHandler() }))
    return (app, state)
}

/// Long enough that a test of one timeout is never ended by another.
private let long: Duration = .seconds(60)

/// Slow, idle and oversized clients against a live server on a real socket (short timeouts set
/// per test; every wait polls against a deadline well beyond the timeout under test).
@Suite("Slow and idle clients") struct SlowClientTests {
    @Test("an idle connection, and a keep-alive connection after its request, are closed after --idle-timeout")
    func idleClosed() async throws {
        let fx = try TinyModelFixture()
        let (app, _) = liveApp(fx, timeouts: ConnectionTimeouts(idle: .milliseconds(500), header: long, body: long))
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let silent = try RawClient(host: "localhost", port: port)
            let started = Date()
            #expect(silent.waitForClose(within: 20), "a connection that sent nothing stayed open")
            #expect(Date().timeIntervalSince(started) >= 0.4, "closed before the idle timeout")

            let keepAlive = try RawClient(host: "localhost", port: port)
            keepAlive.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(keepAlive.waitFor("\"ok\"", within: 20))
            #expect(keepAlive.received.hasPrefix("HTTP/1.1 200"))
            #expect(keepAlive.waitForClose(within: 20), "an idle keep-alive connection stayed open")
        }
    }

    @Test("partial and trickled request headers are closed after --header-timeout; a late but whole request is answered")
    func partialHeadersClosed() async throws {
        let fx = try TinyModelFixture()
        let (app, state) = liveApp(fx, timeouts: ConnectionTimeouts(idle: long, header: .milliseconds(500), body: long))
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let partial = try RawClient(host: "localhost", port: port)
            partial.send("POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: app")
            #expect(partial.waitForClose(within: 20), "a partial request head stayed open")

            // One byte every 50 ms keeps the connection busy but never completes the head.
            let trickle = try RawClient(host: "localhost", port: port)
            var bytes = Array("GET /healthz HTTP/1.1\r\nX-Slow: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 10_000)
            let trickleClosed = trickle.waitForClose(within: 20) {
                if !bytes.isEmpty { trickle.send(String(UnicodeScalar(bytes.removeFirst()))) }
            }
            #expect(trickleClosed, "a trickled request head stayed open")
            #expect(state.metrics.timedOutConnections(phase: "header") >= 2)

            // The header deadline starts at a request's first byte, not when the connection opened.
            let late = try RawClient(host: "localhost", port: port)
            try await Task.sleep(for: .seconds(1))
            late.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(late.waitFor("\"ok\"", within: 20))
            #expect(late.received.hasPrefix("HTTP/1.1 200"))
        }
    }

    @Test("a stalled or trickled body is closed after --body-timeout")
    func stalledBodyClosed() async throws {
        let fx = try TinyModelFixture()
        try fx.write(step: 1)
        let (app, state) = liveApp(fx, timeouts: ConnectionTimeouts(idle: long, header: long, body: .milliseconds(500)))
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let head = "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3000\r\n\r\n"
            let stalled = try RawClient(host: "localhost", port: port)
            stalled.send(head + "{\"rows\"")
            #expect(stalled.waitForClose(within: 20), "a stalled body stayed open")

            let trickle = try RawClient(host: "localhost", port: port)
            trickle.send(head)
            let trickleClosed = trickle.waitForClose(within: 20) { trickle.send(" ") }
            #expect(trickleClosed, "a trickled body stayed open")
            #expect(state.metrics.timedOutConnections(phase: "body") >= 2)
        }
    }

    @Test("a declared Content-Length over --max-body-bytes gets 413 at once and the connection is closed")
    func oversizedDeclaredBodyRefusedUpFront() async throws {
        let fx = try TinyModelFixture()
        try fx.write(step: 1)
        let (app, _) = liveApp(fx, timeouts: ConnectionTimeouts(idle: long, header: long, body: long))
        try await app.test(.live) { client in
            #expect(try await eventually { try await client.execute(uri: "/readyz", method: .get).status == .ok })
            let port = try #require(client.port)
            let big = try RawClient(host: "localhost", port: port)
            let started = Date()
            big.send("POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{")
            #expect(big.waitForClose(within: 20), "the server kept waiting for the declared body")
            #expect(Date().timeIntervalSince(started) < 15)
            #expect(big.received.hasPrefix("HTTP/1.1 413"), "\(big.received)")
            #expect(big.received.contains("{\"error\":") && big.received.contains("--max-body-bytes"))

            // Normal requests are still answered.
            let body = jsonBody(["rows": [fx.rows[0]]])
            let r = try await client.execute(uri: "/v1/predict", method: .post, headers: [.contentType: "application/json"],
                                             body: ByteBuffer(string: body))
            #expect(r.status == .ok)
        }
    }
}

/// LATEST and step-* entries that lead outside the checkpoints root.
@Suite("Checkpoints outside the root") struct OutsideRootTests {
    @Test("a LATEST naming a path, .., an absolute path or garbage is refused, logged once, counted; the last good version keeps serving")
    func badLatestRefused() async throws {
        let fx = try TinyModelFixture()
        let log = CapturedLog(), slot = ModelSlot(), metrics = ServingMetrics()
        let watcher = CheckpointWatcher(root: fx.root, slot: slot, metrics: metrics, workspaceRows: 8, logger: log.logger("serve"))
        try fx.write(step: 1)
        #expect(await watcher.pollOnce() == .loaded(version: "step-000000000001"))
        // A good checkpoint outside the root, which an absolute or relative LATEST could reach.
        let outside = try WideDeepCheckpointWriter.writeOutside(fx, step: 2)
        let bad = ["../outside/step-000000000002", outside.path, "..", "step-000000000001/../../outside/step-000000000002",
                   "garbage\u{1}"]
        for (i, text) in bad.enumerated() {
            try fx.pointLatest(at: text)
            guard case .rejected = await watcher.pollOnce() else { Issue.record("LATEST = \(text) was not refused"); continue }
            #expect(await watcher.pollOnce() == .unchanged, "refused once, not on every poll")
            #expect(metrics.rejectedCheckpoints(reason: "invalid_latest") == UInt64(i + 1))
            #expect(log.lines.filter { $0.contains("refused LATEST") }.count == i + 1, "\(log.lines)")
            #expect(slot.current?.version == "step-000000000001")
        }
        #expect(try PrometheusText(metrics.render(model: slot.current))
            .value("streamrec_serve_rejected_checkpoints_total", ["reason": "invalid_latest"]) == Double(bad.count))
        // Fixing LATEST is picked up.
        try fx.write(step: 3)
        #expect(await watcher.pollOnce() == .loaded(version: "step-000000000003"))
    }

    @Test("a step-* symlink leading outside the root is refused, logged once, counted; one inside the root is served")
    func symlinkOutsideRefused() async throws {
        let fx = try TinyModelFixture()
        let log = CapturedLog(), slot = ModelSlot(), metrics = ServingMetrics()
        let watcher = CheckpointWatcher(root: fx.root, slot: slot, metrics: metrics, workspaceRows: 8, logger: log.logger("serve"))
        let good = try fx.write(step: 1)
        #expect(await watcher.pollOnce() == .loaded(version: "step-000000000001"))
        let outside = try WideDeepCheckpointWriter.writeOutside(fx, step: 7)
        let link = fx.root.appendingPathComponent("step-000000000007")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: outside)
        try fx.pointLatest(at: "step-000000000007")
        guard case .rejected(_, let reason) = await watcher.pollOnce() else {
            Issue.record("a symlink outside the root was served"); return
        }
        #expect(reason.contains("outside the checkpoints root"))
        #expect(await watcher.pollOnce() == .unchanged)
        #expect(metrics.rejectedCheckpoints(reason: "outside_root") == 1)
        #expect(log.lines.filter { $0.contains("refused") }.count == 1)
        #expect(slot.current?.version == "step-000000000001")

        // A symlink within the root is only another name for a version there.
        let inside = fx.root.appendingPathComponent("step-000000000008")
        let eight = try fx.write(step: 8)
        try FileManager.default.moveItem(at: eight, to: fx.root.appendingPathComponent(".moved"))
        try FileManager.default.createSymbolicLink(at: inside, withDestinationURL: fx.root.appendingPathComponent(".moved"))
        try fx.pointLatest(at: "step-000000000008")
        #expect(await watcher.pollOnce() == .loaded(version: "step-000000000008"))
        _ = good
    }
}

/// Writes a version of the fixture's model into `<fixture>/outside/`, a directory beside the root.
enum WideDeepCheckpointWriter {
    static func writeOutside(_ fx: TinyModelFixture, step: Int) throws -> URL {
        // Written by a store of its own: written in the root and moved out, the version was
        // briefly LATEST there, and a watcher polling meanwhile could load it.
        let outsideRoot = fx.dir.appendingPathComponent("outside")
        try FileManager.default.createDirectory(at: outsideRoot, withIntermediateDirectories: true)
        let url = try fx.write(step: step, to: CheckpointStore(directory: outsideRoot, keep: 100))
        try? FileManager.default.removeItem(at: outsideRoot.appendingPathComponent(CheckpointStore.latestFileName))
        return url
    }
}
