// Criteo TSV parsing: one line of bytes → one `CriteoRow`, or a typed `RowRejection`.
//
// Format (Criteo's day files): `label \t I1 … I13 \t C1 … C26`, 40 tab-separated fields, an empty
// field means "missing". Inference files have no label column (39 fields); they are accepted only
// when the caller says labels are optional.
//
// The parser works on raw UTF-8 bytes, never on `String`s: it copies the line into the row's own
// reusable byte buffer, validates it, and records where each categorical field starts and ends.
// Parsing into a reused `CriteoRow` allocates nothing once the row's buffers have grown.
//
// Malformed rows are rejected with a reason and a human-readable detail; they are never "fixed".

// MARK: - Rejections

/// Why a row was refused. Raw values are stable snake_case names used as metric/counter names.
public enum RejectReason: String, CaseIterable, Sendable, Codable {
    /// The line (after stripping a trailing "\n"/"\r\n") is empty.
    case emptyLine = "empty_line"
    /// The line is longer than the parser's `maxLineLength`.
    case lineTooLong = "line_too_long"
    /// The line is not valid UTF-8.
    case invalidUTF8 = "invalid_utf8"
    /// A "\n" or "\r" inside the line (a line must be one record).
    case embeddedNewline = "embedded_newline"
    /// Not 40 fields (or 39 when labels are optional).
    case wrongFieldCount = "wrong_field_count"
    /// The label is not exactly "0" or "1".
    case badLabel = "bad_label"
    /// A dense field is not a decimal number (includes "nan", "inf", hex, stray spaces).
    case nonNumericDense = "non_numeric_dense"
    /// A dense field is a number too large for Float32.
    case denseOutOfRange = "dense_out_of_range"
    // Behaviour events (`BehaviorParser`):
    /// Fewer than the 4 fields user,item,behavior,time.
    case missingField = "missing_field"
    /// A user or item id is empty.
    case emptyId = "empty_id"
    /// The behaviour is not pv, cart, fav or buy.
    case unknownBehavior = "unknown_behavior"
    /// The time is not a non-negative integer (Unix seconds).
    case badTime = "bad_time"

    /// The reasons `CriteoParser` gives.
    public static let criteo: [RejectReason] = [.emptyLine, .lineTooLong, .invalidUTF8, .embeddedNewline, .wrongFieldCount,
                                                .badLabel, .nonNumericDense, .denseOutOfRange]
    /// The reasons `BehaviorParser` gives.
    public static let behavior: [RejectReason] = [.emptyLine, .lineTooLong, .embeddedNewline, .wrongFieldCount,
                                                  .missingField, .emptyId, .unknownBehavior, .badTime]
}

/// A refused row: the reason (for counting) and a detail for people.
public struct RowRejection: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: RejectReason
    /// Human-readable, e.g. "expected 40 tab-separated fields, got 12".
    public var detail: String

    public init(_ reason: RejectReason, _ detail: String) {
        self.reason = reason
        self.detail = detail
    }

    public var description: String { "\(reason.rawValue): \(detail)" }
}

// MARK: - Parsed row

/// One parsed Criteo row. Reuse one instance with `CriteoParser.parse(_:into:)` to avoid allocation.
///
/// - `label`: 0 or 1, or nil for an unlabelled (inference) row.
/// - `dense`: 13 values; `Float.nan` marks a missing value (test with `isNaN`).
/// - categories: 26 byte strings, slices of `bytes` (the row's own copy of its line). The empty
///   category "" is an ordinary value.
public struct CriteoRow: Sendable, Equatable {
    public var label: Float?
    public var dense: [Float]
    /// The line's bytes (trailing newline stripped). Categories are ranges into it.
    public private(set) var bytes: [UInt8]
    @usableFromInline var catStart: [Int32]
    @usableFromInline var catEnd: [Int32]

    /// An empty row (all dense missing, all categories ""), ready to be filled by a parser.
    public init() {
        label = nil
        dense = [Float](repeating: .nan, count: CriteoSchema.denseCount)
        bytes = []
        bytes.reserveCapacity(256)
        catStart = [Int32](repeating: 0, count: CriteoSchema.categoricalCount)
        catEnd = [Int32](repeating: 0, count: CriteoSchema.categoricalCount)
    }

    /// A row built from values (tests, generators). `dense` uses nil for missing.
    public init(label: Float?, dense: [Float?], categories: [[UInt8]]) {
        precondition(dense.count == CriteoSchema.denseCount && categories.count == CriteoSchema.categoricalCount)
        self.init()
        self.label = label
        self.dense = dense.map { $0 ?? .nan }
        for (j, c) in categories.enumerated() {
            catStart[j] = Int32(bytes.count)
            bytes.append(contentsOf: c)
            catEnd[j] = Int32(bytes.count)
        }
    }

    /// Categorical field `j` (0..<26) as a slice of `bytes`.
    @inlinable
    public func category(_ j: Int) -> ArraySlice<UInt8> {
        bytes[Int(catStart[j])..<Int(catEnd[j])]
    }

    /// Categorical field `j` as a String (convenience; not for hot paths).
    public func categoryString(_ j: Int) -> String {
        String(decoding: category(j), as: UTF8.self)
    }

    /// Whether dense field `i` is missing.
    @inlinable
    public func isMissing(dense i: Int) -> Bool { dense[i].isNaN }

    /// Calls `body` with each categorical field's bytes (j = 0..<26) without copying.
    @inlinable
    public func withCategoryBytes<R>(_ body: (_ j: Int, _ bytes: UnsafeRawBufferPointer) throws -> R?) rethrows -> R? {
        try bytes.withUnsafeBytes { raw in
            for j in 0..<CriteoSchema.categoricalCount {
                let s = Int(catStart[j]), e = Int(catEnd[j])
                if let r = try body(j, UnsafeRawBufferPointer(rebasing: raw[s..<e])) { return r }
            }
            return nil
        }
    }

    public static func == (a: CriteoRow, b: CriteoRow) -> Bool {
        guard a.label == b.label else { return false }
        for i in 0..<CriteoSchema.denseCount {
            let x = a.dense[i], y = b.dense[i]
            if !(x == y || (x.isNaN && y.isNaN)) { return false }
        }
        for j in 0..<CriteoSchema.categoricalCount where a.category(j) != b.category(j) { return false }
        return true
    }

    // Parser access.
    @usableFromInline mutating func setBytes(_ line: UnsafeRawBufferPointer) {
        bytes.removeAll(keepingCapacity: true)
        bytes.append(contentsOf: line)
    }
}

// MARK: - Parser

/// Parses Criteo lines. A value type with no mutable state: share it freely across threads.
///
/// ```swift
/// let parser = CriteoParser(labels: .required)
/// var row = CriteoRow()
/// try parser.parse(lineBytes, into: &row)     // throws(RowRejection)
/// ```
public struct CriteoParser: Sendable {
    public enum LabelMode: String, Sendable, CaseIterable {
        /// Every row must have the label column (40 fields).
        case required
        /// Rows may have it (40 fields) or not (39 fields, `label == nil`): inference input.
        case optional
    }

    public static let defaultMaxLineLength = 64 * 1024

    public var labels: LabelMode
    /// Longest accepted line in bytes, not counting a trailing "\n" or "\r\n".
    public var maxLineLength: Int

    public init(labels: LabelMode = .required, maxLineLength: Int = CriteoParser.defaultMaxLineLength) {
        precondition(maxLineLength > 0)
        self.labels = labels
        self.maxLineLength = maxLineLength
    }

    /// Parses one line (a trailing "\n", "\r\n" or "\r" is stripped) into `row`.
    /// On rejection `row` holds unspecified contents.
    public func parse(_ line: UnsafeRawBufferPointer, into row: inout CriteoRow) throws(RowRejection) {
        var n = line.count
        if n > 0 && line[n - 1] == UInt8(ascii: "\n") { n -= 1 }
        if n > 0 && line[n - 1] == UInt8(ascii: "\r") { n -= 1 }
        if n > maxLineLength {
            throw RowRejection(.lineTooLong, "line is \(n) bytes, limit is \(maxLineLength)")
        }
        if n == 0 { throw RowRejection(.emptyLine, "empty line") }
        row.setBytes(UnsafeRawBufferPointer(rebasing: line[0..<n]))
        let bytes = row.bytes  // shares storage; parseValidated does not touch row.bytes
        let rejection: RowRejection? = bytes.withUnsafeBufferPointer { buf in
            Self.parseValidated(buf, labels: labels, row: &row)
        }
        if let rejection { throw rejection }
    }

    /// Convenience over any contiguous bytes (`[UInt8]`, `ArraySlice<UInt8>`, `Data`…).
    public func parse(bytes: some Collection<UInt8>, into row: inout CriteoRow) throws(RowRejection) {
        let done: Result<Void, RowRejection>? = bytes.withContiguousStorageIfAvailable { buf in
            do throws(RowRejection) { try parse(UnsafeRawBufferPointer(buf), into: &row); return .success(()) }
            catch { return .failure(error) }
        }
        if let done { try done.get(); return }
        let copy = Array(bytes)
        let result: Result<Void, RowRejection> = copy.withUnsafeBytes { raw in
            do throws(RowRejection) { try parse(raw, into: &row); return .success(()) }
            catch { return .failure(error) }
        }
        try result.get()
    }

    /// Convenience: parses a `String` line into a fresh row (not for hot paths).
    public func parse(_ line: String) throws(RowRejection) -> CriteoRow {
        var row = CriteoRow()
        var s = line
        let result: Result<Void, RowRejection> = s.withUTF8 { buf in
            do throws(RowRejection) { try parse(UnsafeRawBufferPointer(buf), into: &row); return .success(()) }
            catch { return .failure(error) }
        }
        try result.get()
        return row
    }

    // The line is in `row.bytes` (== `p`), stripped, non-empty, within the length limit.
    @inline(__always)
    static func parseValidated(_ p: UnsafeBufferPointer<UInt8>, labels: LabelMode,
                               row: inout CriteoRow) -> RowRejection? {
        let n = p.count
        if let bad = UTF8Check.firstInvalidByte(p) {
            return RowRejection(.invalidUTF8, "invalid UTF-8 at byte offset \(bad)")
        }
        // Split on tabs; remember up to 40 field ends.
        let maxFields = 1 + CriteoSchema.fieldCount
        let rejection: RowRejection? = withUnsafeTemporaryAllocation(of: Int.self, capacity: maxFields) { ends in
            var fields = 0
            var i = 0
            while i < n {
                let b = p[i]
                if b == 0x09 {
                    if fields < maxFields { ends[fields] = i }
                    fields += 1
                } else if b == 0x0A || b == 0x0D {
                    return RowRejection(.embeddedNewline, "line break inside the line at byte offset \(i)")
                }
                i += 1
            }
            if fields < maxFields { ends[fields] = n }
            fields += 1

            let hasLabel: Bool
            if fields == CriteoSchema.fieldCount + 1 {
                hasLabel = true
            } else if fields == CriteoSchema.fieldCount && labels == .optional {
                hasLabel = false
            } else {
                let expected = labels == .optional
                    ? "\(CriteoSchema.fieldCount + 1) (labelled) or \(CriteoSchema.fieldCount) (unlabelled)"
                    : "\(CriteoSchema.fieldCount + 1)"
                return RowRejection(.wrongFieldCount, "expected \(expected) tab-separated fields, got \(fields)")
            }
            var start = 0
            var f = 0
            if hasLabel {
                let e = ends[0]
                if e == 1 && (p[0] == UInt8(ascii: "0") || p[0] == UInt8(ascii: "1")) {
                    row.label = p[0] == UInt8(ascii: "1") ? 1 : 0
                } else {
                    return RowRejection(.badLabel, "label must be 0 or 1, got \(quoted(p, 0, e))")
                }
                start = e + 1
                f = 1
            } else {
                row.label = nil
            }
            for d in 0..<CriteoSchema.denseCount {
                let e = ends[f]
                switch DecimalParser.parse(p.baseAddress! + start, e - start) {
                case .value(let v): row.dense[d] = v
                case .missing: row.dense[d] = .nan
                case .notNumber:
                    return RowRejection(.nonNumericDense, "I\(d + 1) is not a number: \(quoted(p, start, e))")
                case .outOfRange:
                    return RowRejection(.denseOutOfRange, "I\(d + 1) is out of Float32 range: \(quoted(p, start, e))")
                }
                start = e + 1
                f += 1
            }
            for c in 0..<CriteoSchema.categoricalCount {
                let e = ends[f]
                row.catStart[c] = Int32(truncatingIfNeeded: start)
                row.catEnd[c] = Int32(truncatingIfNeeded: e)
                start = e + 1
                f += 1
            }
            return nil
        }
        return rejection
    }

    /// A field's text for error messages: at most 40 bytes, quoted.
    static func quoted(_ p: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int) -> String {
        let end = min(e, s + 40)
        let text = String(decoding: UnsafeBufferPointer(rebasing: p[s..<end]), as: UTF8.self)
        return "\"" + text + (end < e ? "…" : "") + "\""
    }
}

// MARK: - UTF-8 validation

enum UTF8Check {
    /// Offset of the first byte of an invalid sequence, or nil when `p` is valid UTF-8
    /// (no overlongs, no surrogates, nothing above U+10FFFF).
    @inline(__always)
    static func firstInvalidByte(_ p: UnsafeBufferPointer<UInt8>) -> Int? {
        let n = p.count
        guard let base = p.baseAddress else { return nil }
        var i = 0
        // ASCII fast path, 8 bytes at a time.
        while i + 8 <= n {
            let w = UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)
            if w & 0x8080_8080_8080_8080 != 0 { break }
            i += 8
        }
        while i < n {
            let b = p[i]
            if b < 0x80 { i += 1; continue }
            var need = 0
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
            switch b {
            case 0xC2...0xDF: need = 1
            case 0xE0: need = 2; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: need = 2
            case 0xED: need = 2; hi = 0x9F
            case 0xF0: need = 3; lo = 0x90
            case 0xF1...0xF3: need = 3
            case 0xF4: need = 3; hi = 0x8F
            default: return i
            }
            if i + need >= n { return i }  // truncated sequence
            let b1 = p[i + 1]
            if b1 < lo || b1 > hi { return i }
            var k = 2
            while k <= need {
                let bk = p[i + k]
                if bk < 0x80 || bk > 0xBF { return i }
                k += 1
            }
            i += need + 1
        }
        return nil
    }
}

// MARK: - Dense numbers

/// Decimal number parsing from bytes: `[+-]? digits [. digits] [(e|E) [+-]? digits]`, also `.5`
/// and `5.`. No "nan", "inf", hex or whitespace. Integers up to 2^53 are exact; other values use
/// Clinger's fast path (exact powers of ten) when possible and are correctly rounded there.
enum DecimalParser {
    enum Result: Equatable { case value(Float), missing, notNumber, outOfRange }

    static let pow10: [Double] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22]

    @inline(__always)
    static func parse(_ p: UnsafePointer<UInt8>, _ n: Int) -> Result {
        if n == 0 { return .missing }
        var i = 0
        var negative = false
        if p[0] == UInt8(ascii: "-") { negative = true; i = 1 } else if p[0] == UInt8(ascii: "+") { i = 1 }
        var mantissa: UInt64 = 0
        var significant = 0
        var exp10 = 0
        var sawDigit = false
        while i < n {
            let d = p[i] &- 0x30
            if d > 9 { break }
            sawDigit = true
            if significant < 19 {
                if mantissa != 0 || d != 0 { mantissa = mantissa &* 10 &+ UInt64(d); significant += 1 }
            } else {
                exp10 += 1
            }
            i += 1
        }
        if i < n && p[i] == UInt8(ascii: ".") {
            i += 1
            while i < n {
                let d = p[i] &- 0x30
                if d > 9 { break }
                sawDigit = true
                if significant < 19 {
                    if mantissa != 0 || d != 0 { mantissa = mantissa &* 10 &+ UInt64(d); significant += 1 }
                    exp10 -= 1
                }
                i += 1
            }
        }
        if !sawDigit { return .notNumber }
        if i < n && (p[i] == UInt8(ascii: "e") || p[i] == UInt8(ascii: "E")) {
            i += 1
            var expNegative = false
            if i < n && (p[i] == UInt8(ascii: "-") || p[i] == UInt8(ascii: "+")) {
                expNegative = p[i] == UInt8(ascii: "-"); i += 1
            }
            var e = 0
            var expDigits = 0
            while i < n {
                let d = p[i] &- 0x30
                if d > 9 { break }
                if e < 100_000 { e = e * 10 + Int(d) }
                expDigits += 1
                i += 1
            }
            if expDigits == 0 { return .notNumber }
            exp10 += expNegative ? -e : e
        }
        if i != n { return .notNumber }
        var value: Double
        if mantissa == 0 {
            value = 0
        } else if exp10 == 0 {
            value = Double(mantissa)
        } else if mantissa <= (1 << 53) && exp10 >= -22 && exp10 <= 22 {
            value = exp10 > 0 ? Double(mantissa) * pow10[exp10] : Double(mantissa) / pow10[-exp10]
        } else {
            value = Double(mantissa)
            var e = exp10
            while e > 0 && value.isFinite { let s = min(e, 22); value *= pow10[s]; e -= s }
            while e < 0 && value != 0 { let s = min(-e, 22); value /= pow10[s]; e += s }
        }
        let f = Float(negative ? -value : value)
        return f.isFinite ? .value(f) : .outOfRange
    }
}
