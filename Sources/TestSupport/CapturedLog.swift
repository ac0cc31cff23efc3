// Log lines kept in memory for a test to assert on: `logger` is a swift-log Logger whose lines
// (the text format, without the newline) land here, from any thread.
import Foundation
import Logging
import Observability
import Synchronization

public final class CapturedLog: Sendable {
    private let kept = Mutex<[String]>([])

    public init() {}

    /// A logger writing into this capture at `level` and above (text format: warnings and errors
    /// carry their level word, as on a terminal).
    public func logger(_ component: String = "test", level: Logger.Level = .trace) -> Logger {
        let sink = self
        var logger = Logger(label: component) { label in CapturingHandler(component: label, sink: sink) }
        logger.logLevel = level
        return logger
    }

    /// Adds a line of the test's own (e.g. what the client saw), between the captured ones.
    public func add(_ line: String) { kept.withLock { $0.append(line) } }

    public var lines: [String] { kept.withLock { $0 } }
    public var text: String { lines.joined(separator: "\n") }

    struct CapturingHandler: LogHandler {
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        let component: String
        let sink: CapturedLog

        init(component: String, sink: CapturedLog) { self.component = component; self.sink = sink }

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let line = StreamRecLogHandler.render(format: .text, date: Date(), level: event.level, component: component,
                                                  message: event.message.description, context: metadata,
                                                  fields: event.metadata ?? [:])
            sink.add(String(line.dropLast()))
        }
    }
}
