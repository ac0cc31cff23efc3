// The one log handler of every command (swift-log): `text` keeps the lines a person reads at a
// terminal as they were (the seed's training line `epoch: E, step: S, wide_loss: …` is printed
// exactly as it is), `json` writes one object per line for log collectors.
import Foundation
import Logging
import Synchronization

/// How log lines are written.
public enum LogFormat: String, CaseIterable, Sendable {
    /// `[level: ][tag ]message[ key=value …]`; info lines carry no level word.
    case text
    /// `{"time":…,"level":…,"component":…,"message":…, <metadata>…}`, one object per line.
    case json
}

/// Where log lines go: stderr by default; the trainer prints its training lines on stdout
/// (tailed by the cluster scripts and the demo) and its warnings and errors on stderr.
public enum LogStream: Sendable {
    case standardError, standardOutput

    func fileHandle(for level: Logger.Level) -> FileHandle {
        self == .standardOutput && level < .warning ? .standardOutput : .standardError
    }
}

/// Metadata keys with a fixed meaning. `tag` is the human prefix of text lines
/// (`featurize[shard 0]`); JSON lines carry `component` and the context keys instead.
public enum LogKey {
    public static let tag = "tag"
}

/// Writes whole lines under one lock, so lines from several threads never interleave.
final class LineWriter: Sendable {
    private let lock = Mutex(())
    let stream: LogStream
    init(stream: LogStream) { self.stream = stream }
    func write(_ line: String, level: Logger.Level) {
        lock.withLock { _ in stream.fileHandle(for: level).write(Data(line.utf8)) }
    }
}

/// The StreamRec log handler. Value semantics as swift-log asks: metadata and level are per copy.
public struct StreamRecLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public var metadataProvider: Logger.MetadataProvider?
    let component: String
    let format: LogFormat
    let writer: LineWriter

    init(component: String, level: Logger.Level, format: LogFormat, writer: LineWriter) {
        self.component = component; self.logLevel = level; self.format = format; self.writer = writer
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var context = metadata
        if let provided = metadataProvider?.get() { context.merge(provided) { _, new in new } }
        var fields = event.metadata ?? [:]
        if let error = event.error { fields["error"] = .string("\(error)") }
        writer.write(Self.render(format: format, date: Date(), level: event.level, component: component,
                                 message: event.message.description, context: context, fields: fields), level: event.level)
    }

    /// One line (with its newline) in `format`. `context` is the logger's own metadata (rank,
    /// worker, the text tag): in text it shows only as the tag; `fields` are the call's metadata.
    public static func render(format: LogFormat, date: Date, level: Logger.Level, component: String,
                              message: String, context: Logger.Metadata = [:], fields: Logger.Metadata = [:]) -> String {
        switch format {
        case .text:
            var line = level == .info ? "" : "\(level.rawValue): "
            if case .string(let tag)? = context[LogKey.tag] { line += tag + " " }
            line += message
            for (key, value) in fields.sorted(by: { $0.key < $1.key }) { line += " \(key)=\(value)" }
            return line + "\n"
        case .json:
            var object: [String: Any] = ["time": timestamp(date), "level": level.rawValue,
                                         "component": component, "message": message]
            for (key, value) in context.merging(fields, uniquingKeysWith: { _, new in new })
            where key != LogKey.tag && object[key] == nil { object[key] = json(value) }
            guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
                return "{\"level\":\"error\",\"message\":\"unencodable log line\"}\n"
            }
            return String(decoding: data, as: UTF8.self) + "\n"
        }
    }

    static func json(_ value: Logger.MetadataValue) -> Any {
        switch value {
        case .string(let s): return Int(s).map { $0 as Any } ?? s
        case .stringConvertible(let c):
            if let n = c as? any BinaryInteger { return Int(n) }
            if let d = c as? Double, d.isFinite { return d }
            return c.description
        case .array(let a): return a.map(json)
        case .dictionary(let d): return d.mapValues(json)
        }
    }

    static func timestamp(_ date: Date) -> String {
        // ISO 8601 with milliseconds, UTC.
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&t, &parts)
        let ms = Int((date.timeIntervalSince1970 - Double(t)) * 1000)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec, ms)
    }
}

/// The process-wide logging set-up, once, before the first line.
public enum LogSetup {
    private static let done = Mutex(false)
    private static let chosen = Mutex<LogFormat?>(nil)

    /// The format bootstrapped (nil before `bootstrap`).
    public static var format: LogFormat? { chosen.withLock { $0 } }

    /// Bootstraps swift-log with `StreamRecLogHandler`. Later calls are ignored (swift-log allows
    /// one bootstrap per process).
    public static func bootstrap(level: Logger.Level, format: LogFormat, stream: LogStream = .standardError) {
        let first = done.withLock { d in defer { d = true }; return !d }
        guard first else { return }
        chosen.withLock { $0 = format }
        let writer = LineWriter(stream: stream)
        LoggingSystem.bootstrap { label in StreamRecLogHandler(component: label, level: level, format: format, writer: writer) }
    }
}

extension Logger {
    /// A logger for `component` whose text lines start with `tag` (e.g. `featurize[shard 0]`).
    public func tagged(_ tag: String) -> Logger {
        var copy = self
        copy[metadataKey: LogKey.tag] = .string(tag)
        return copy
    }
}
