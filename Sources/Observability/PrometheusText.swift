// A reader for the Prometheus text format (what `GET /metrics` returns): the samples of a scrape,
// for tests and for `ServingMetrics`' query methods. Comments (# HELP, # TYPE) are skipped.
import Foundation

/// One sample line: `name{label="value",…} value`.
public struct PrometheusSample: Sendable, Equatable {
    public var name: String
    public var labels: [String: String]
    public var value: Double
}

public struct PrometheusText: Sendable {
    public let samples: [PrometheusSample]
    /// The `# TYPE` of each family.
    public let types: [String: String]

    /// No samples (what an unreadable scrape reads as).
    public static let empty = PrometheusText(samples: [], types: [:])

    private init(samples: [PrometheusSample], types: [String: String]) { self.samples = samples; self.types = types }

    /// Parses `text`; throws on a line that is not a comment or a sample.
    public init(_ text: String) throws {
        var samples: [PrometheusSample] = []
        var types: [String: String] = [:]
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ")
                if parts.count >= 4, parts[1] == "TYPE" { types[String(parts[2])] = String(parts[3]) }
                continue
            }
            samples.append(try Self.sample(line))
        }
        self.samples = samples
        self.types = types
    }

    /// The value of the series `name` whose labels include `labels` (nil if there is none). With
    /// several matches, their sum (e.g. a counter over all its reasons).
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        let matching = samples.filter { sample in sample.name == name && labels.allSatisfy { k, v in sample.labels[k] == v } }
        return matching.isEmpty ? nil : matching.reduce(0) { $0 + $1.value }
    }

    /// Every series name in the scrape.
    public var names: Set<String> { Set(samples.map(\.name)) }

    struct ParseError: Error, CustomStringConvertible {
        let line: String
        var description: String { "not a Prometheus sample line: \(line)" }
    }

    static func sample(_ line: String) throws -> PrometheusSample {
        let chars = Array(line)
        var i = 0
        var name = ""
        while i < chars.count, chars[i] != "{", chars[i] != " " { name.append(chars[i]); i += 1 }
        var labels: [String: String] = [:]
        if i < chars.count, chars[i] == "{" {
            i += 1
            while i < chars.count, chars[i] != "}" {
                var key = ""
                while i < chars.count, chars[i] != "=" { key.append(chars[i]); i += 1 }
                guard i + 1 < chars.count, chars[i + 1] == "\"" else { throw ParseError(line: line) }
                i += 2
                var value = ""
                while i < chars.count, chars[i] != "\"" {
                    if chars[i] == "\\", i + 1 < chars.count {
                        i += 1
                        value.append(chars[i] == "n" ? "\n" : chars[i])
                    } else { value.append(chars[i]) }
                    i += 1
                }
                guard i < chars.count else { throw ParseError(line: line) }
                i += 1   // closing quote
                labels[key.trimmingCharacters(in: .whitespaces)] = value
                if i < chars.count, chars[i] == "," { i += 1 }
            }
            guard i < chars.count else { throw ParseError(line: line) }
            i += 1   // }
        }
        let rest = String(chars[i...]).trimmingCharacters(in: .whitespaces).split(separator: " ")
        guard !name.isEmpty, let first = rest.first else { throw ParseError(line: line) }
        let value: Double
        switch first {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default:
            guard let v = Double(first) else { throw ParseError(line: line) }
            value = v
        }
        return PrometheusSample(name: name, labels: labels, value: value)
    }
}

