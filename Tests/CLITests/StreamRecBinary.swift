import Foundation
import TestSupport

/// Runs the built `streamrec` executable (TestSupport's `streamrecBinary()`) and captures its output.
enum StreamRecBinary {
    @discardableResult
    static func run(_ args: [String], environment: [String: String] = [:], timeout: Duration = .seconds(300)) throws -> ProcessResult {
        guard let bin = streamrecBinary() else { throw FixtureError("streamrec is not built; run scripts/setup.sh") }
        return try runProcess(bin, args, environment: environment, timeout: timeout)
    }
}

func tempDirectory(_ name: String = #function) throws -> URL { try temporaryTestDirectory(name) }
