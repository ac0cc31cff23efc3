import Foundation
import Testing
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
        kill(process.processIdentifier, SIGTERM)
        let exited = await eventually(30) { !process.isRunning }
        #expect(exited)
        if exited { #expect(process.terminationStatus == 0) }
    }
}
