import Foundation
import Testing
import Checkpoint
import TestSupport

/// The real `streamrec serve` process: answers on its port, and SIGTERM stops it cleanly (exit 0),
/// even though test threads block SIGTERM and the child inherits that mask.
@Suite("streamrec serve binary") struct ServeBinaryTests {
    @Test("serves, then exits cleanly on SIGTERM", .enabled(if: streamrecBinary() != nil && findExecutable("curl") != nil))
    func sigtermStopsCleanly() async throws {
        let fx = try TinyModelFixture()
        try fx.write(step: 3)
        let port = try freeLoopbackPort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: streamrecBinary()!)
        process.arguments = ["serve", "--checkpoints", fx.root.path, "--port", String(port), "--poll-interval-ms", "50"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let curl = findExecutable("curl")!
        let ready = try await eventually(60) {
            let r = try? runProcess(curl, ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)/readyz"],
                                    timeout: .seconds(5))
            return r?.stdout == "200"
        }
        #expect(ready)
        let predict = try runProcess(curl, ["-s", "-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
                                            jsonBody(["rows": [fx.rows[0]]]), "http://127.0.0.1:\(port)/v1/predict"])
        #expect(predict.stdout.contains("\"model_version\":\"step-000000000003\""))
        // GET /metrics of the real process (its metrics on the process's registry, bootstrapped into swift-metrics).
        let m = try scrapeMetrics(port: port)
        #expect(m.value("streamrec_serve_requests_total", ["endpoint": "/v1/predict", "status": "200"]) == 1)
        #expect(m.value("streamrec_serve_model_step") == 3 && m.value("streamrec_serve_reloads_total") == 1)
        #expect(m.types["streamrec_serve_request_duration_seconds"] == "histogram")
        kill(process.processIdentifier, SIGTERM)
        let exited = await eventually(30) { !process.isRunning }
        #expect(exited)
        if exited { #expect(process.terminationStatus == 0) }
    }

    @Test("serves an RL checkpoint: /v1/recommend stateful (Redis) and stateless, /v1/predict 409; exits cleanly on SIGTERM",
          .enabled(if: streamrecBinary() != nil && findExecutable("curl") != nil))
    func servesRecommender() async throws {
        let fx = try TinyRecommenderFixture()
        let checkpoint = try fx.write(step: 4)
        let direct = try DirectRecommender(checkpoint)
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let (userState, next) = featurizedState(items: [3, 8, 13, 21, 34])
        try writeUserState(redis.address, user: "u9", userState)
        let port = try freeLoopbackPort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: streamrecBinary()!)
        process.arguments = ["serve", "--checkpoints", fx.root.path, "--port", String(port), "--poll-interval-ms", "50",
                             "--redis", redis.address]
        let logURL = fx.dir.appendingPathComponent("serve.log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let logFile = try FileHandle(forWritingTo: logURL)
        defer { try? logFile.close() }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = logFile
        func log() -> String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let curl = findExecutable("curl")!
        func post(_ path: String, _ body: String) throws -> (status: String, body: String) {
            let r = try runProcess(curl, ["-s", "-w", "\n%{http_code}", "-X", "POST", "-H", "Content-Type: application/json",
                                          "--data-binary", body, "http://127.0.0.1:\(port)\(path)"], timeout: .seconds(10))
            let parts = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            return (String(parts.last ?? ""), parts.dropLast().joined(separator: "\n"))
        }
        let ready = await eventually(60) {
            let r = try? runProcess(curl, ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)/readyz"],
                                    timeout: .seconds(5))
            return r?.stdout == "200"
        }
        #expect(ready, "\(log())")

        let stateful = try post("/v1/recommend", jsonBody(["user": "u9", "n": 5]))
        #expect(stateful.status == "200", "\(stateful.body)\n\(log())")
        let a = try decodeAnswer(stateful.body)
        #expect(a.source == "model" && a.step == 4)
        #expect(a.items.map(\.item) == direct.top(user: 9, state: next, masked: Set(userState.consumed), n: 5).map(\.item))
        let stateless = try post("/v1/recommend", jsonBody(["history": ["i3", "i8"], "n": 2]))
        #expect(stateless.status == "200", "\(stateless.body)")
        #expect(try decodeAnswer(stateless.body).items.count == 2)
        let predict = try post("/v1/predict", jsonBody(["rows": ["1"]]))
        #expect(predict.status == "409" && predict.body.contains("reinforce"), "\(predict.body)")
        #expect(log().contains("serving step-000000000004 (reinforce, step 4)"), "\(log())")

        kill(process.processIdentifier, SIGTERM)
        let exited = await eventually(30) { !process.isRunning }
        #expect(exited)
        if exited { #expect(process.terminationStatus == 0) }
    }

    @Test("SIGTERM stops serve within seconds despite idle, partial and stalled clients and a reload in progress",
          .enabled(if: streamrecBinary() != nil))
    func sigtermWithSlowClientsAndReload() async throws {
        let fx = try TinyModelFixture()
        try fx.write(step: 3)
        let port = try freeLoopbackPort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: streamrecBinary()!)
        // Default idle/header/body timeouts (60/10/30 s): nothing below ends on its own.
        process.arguments = ["serve", "--checkpoints", fx.root.path, "--port", String(port), "--poll-interval-ms", "50",
                             "--shutdown-timeout", "3"]
        let logURL = fx.dir.appendingPathComponent("serve.log")
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let logFile = try FileHandle(forWritingTo: logURL)
        defer { try? logFile.close() }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = logFile
        func log() -> String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let ready = await eventually(60) {
            guard let probe = try? RawClient(port: port) else { return false }
            probe.send("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            return probe.waitFor("\"ready\"", within: 5)
        }
        try #require(ready)

        let idle = try RawClient(port: port)
        let partial = try RawClient(port: port)
        partial.send("POST /v1/predict HTTP/1.1\r\nHost: x\r\n")
        let stalled = try RawClient(port: port)
        stalled.send("POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")

        // A version whose load takes far longer than the shutdown bound: a 32 GiB sparse file
        // listed in its manifest is hashed in full before anything is swapped.
        let slow = try WideDeepCheckpointWriter.writeOutside(fx, step: 4)
        let padding = slow.appendingPathComponent("padding.bin")
        _ = FileManager.default.createFile(atPath: padding.path, contents: nil)
        let handle = try FileHandle(forWritingTo: padding)
        try handle.truncate(atOffset: 32 << 30)
        try handle.close()
        var manifest = try CheckpointStore.loadManifest(slow)
        manifest.files["padding.bin"] = FileDigest(sha256: String(repeating: "0", count: 64), bytes: 32 << 30)
        try manifest.encoded().write(to: slow.appendingPathComponent(CheckpointManifest.fileName))
        try FileManager.default.moveItem(at: slow, to: fx.root.appendingPathComponent(slow.lastPathComponent))
        try fx.pointLatest(at: slow.lastPathComponent)
        // The loader is under way once the process has read more than 1 GiB (rchar counts read(2) bytes).
        let io = "/proc/\(process.processIdentifier)/io"
        let loading = await eventually(90) {   // generous: a loaded machine hashes slowly
            let text = (try? String(contentsOfFile: io, encoding: .utf8)) ?? ""
            let rchar = text.split(separator: "\n").first { $0.hasPrefix("rchar:") }
                .flatMap { Int($0.dropFirst(6).trimmingCharacters(in: .whitespaces)) } ?? 0
            return rchar > 1 << 30
        }
        #expect(loading, "the slow reload never started: \(log())")

        let signalled = Date()
        kill(process.processIdentifier, SIGTERM)
        let exited = await eventually(20) { !process.isRunning }
        #expect(exited)
        #expect(Date().timeIntervalSince(signalled) < 8, "took \(Date().timeIntervalSince(signalled)) s to stop: \(log())")
        if exited { #expect(process.terminationStatus == 0) }
        for client in [idle, partial, stalled] { #expect(client.waitForClose(within: 5)) }
    }
}
