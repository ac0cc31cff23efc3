// SafeTensors: the standard safetensors file layout, written by streaming and read with full
// validation.
//
//   [8 bytes]  N, little-endian UInt64: length of the JSON header
//   [N bytes]  JSON header, UTF-8, padded with spaces to a multiple of 8 bytes:
//              {"__metadata__": {"k": "v", …},
//               "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, …}
//   [rest]     raw little-endian tensor bytes; offsets are relative to the first byte after the
//              header, tensors are contiguous, in header order, and fill the rest of the file.
//
// Files written here load with Python's `safetensors` and with a few lines of numpy
// (`np.frombuffer(data[8+N+begin : 8+N+end], dtype)`). Supported dtypes: F32, F64, I32, I64, U8.
// Limits: little-endian hosts only (x86_64, arm64); the header is capped at 100 MB like the
// reference implementation.

import FileAccess
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if !_endian(little)
#error("Checkpoint writes tensors by copying host memory; it assumes a little-endian host.")
#endif

// MARK: - Types

/// Element type of a tensor, spelled as in the safetensors header.
public enum TensorDType: String, Sendable, CaseIterable, Codable {
    case f32 = "F32"
    case f64 = "F64"
    case i32 = "I32"
    case i64 = "I64"
    case u8 = "U8"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .u8: 1
        case .f32, .i32: 4
        case .f64, .i64: 8
        }
    }
}

/// Where one tensor lives in a safetensors file.
public struct TensorInfo: Sendable, Equatable, CustomStringConvertible {
    public let name: String
    public let dtype: TensorDType
    public let shape: [Int]
    /// Byte range relative to the start of the data section (the byte after the header).
    public let byteRange: Range<Int>

    public init(name: String, dtype: TensorDType, shape: [Int], byteRange: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.byteRange = byteRange
    }

    /// Product of the shape (1 for a scalar, 0 if any dimension is 0).
    public var elementCount: Int { shape.reduce(1, *) }

    public var description: String {
        "\(name): \(dtype.rawValue)\(shape) bytes \(byteRange.lowerBound)..<\(byteRange.upperBound)"
    }
}

/// The bytes of one tensor to be written.
public enum TensorData: Sendable {
    case float([Float])
    case double([Double])
    case int32([Int32])
    case int64([Int64])
    case uint8([UInt8])
    /// Bytes produced while the file is written, e.g. straight from a model's parameter buffer.
    /// `produce` is called once and must pass exactly `elementCount × dtype.byteSize` bytes to
    /// `emit`, in one or several calls; the pointer given to `emit` is only read during the call.
    case stream(TensorDType, produce: @Sendable (_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void)

    public var dtype: TensorDType {
        switch self {
        case .float: .f32
        case .double: .f64
        case .int32: .i32
        case .int64: .i64
        case .uint8: .u8
        case .stream(let dtype, _): dtype
        }
    }

    /// Number of elements held, or nil for `.stream` (its size comes from the shape).
    var storedCount: Int? {
        switch self {
        case .float(let a): a.count
        case .double(let a): a.count
        case .int32(let a): a.count
        case .int64(let a): a.count
        case .uint8(let a): a.count
        case .stream: nil
        }
    }

    /// Hands the raw bytes to `emit`.
    func emitBytes(_ emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        switch self {
        case .float(let a): try a.withUnsafeBytes(emit)
        case .double(let a): try a.withUnsafeBytes(emit)
        case .int32(let a): try a.withUnsafeBytes(emit)
        case .int64(let a): try a.withUnsafeBytes(emit)
        case .uint8(let a): try a.withUnsafeBytes(emit)
        case .stream(_, let produce): try produce(emit)
        }
    }
}

/// One named tensor to write: name, shape, and its data (which also fixes the dtype).
public struct SafeTensor: Sendable {
    public var name: String
    public var shape: [Int]
    public var data: TensorData

    public init(name: String, shape: [Int], data: TensorData) {
        self.name = name
        self.shape = shape
        self.data = data
    }

    /// A tensor whose shape is `[values.count]`.
    public static func vector(_ name: String, _ values: [Float]) -> SafeTensor {
        SafeTensor(name: name, shape: [values.count], data: .float(values))
    }

    public var dtype: TensorDType { data.dtype }
    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { elementCount * dtype.byteSize }
}

/// Everything that can be wrong with a safetensors file or a write request. Descriptions say
/// what is wrong and where.
public enum SafeTensorsError: Error, Equatable, CustomStringConvertible {
    case io(path: String, message: String)
    /// The file is shorter than the 8-byte header-length prefix.
    case fileTooShort(path: String, size: Int)
    /// The header length prefix claims more bytes than the file holds (or more than 100 MB).
    case headerLengthTooLarge(path: String, headerLength: UInt64, fileSize: Int)
    case invalidHeader(path: String, reason: String)
    case invalidEntry(path: String, tensor: String, reason: String)
    case unknownDType(path: String, tensor: String, dtype: String)
    /// shape product × dtype size disagrees with the tensor's data_offsets.
    case byteCountMismatch(path: String, tensor: String, expected: Int, actual: Int)
    case overlappingTensors(path: String, tensor: String, previous: String)
    case gapBeforeTensor(path: String, tensor: String, gapBytes: Int)
    /// A tensor ends past the end of the file: the file is truncated or the offsets are wrong.
    case tensorOutOfBounds(path: String, tensor: String, end: Int, dataLength: Int)
    case trailingBytes(path: String, used: Int, dataLength: Int)
    case tensorNotFound(path: String, tensor: String)
    case dtypeMismatch(path: String, tensor: String, stored: TensorDType, requested: TensorDType)
    /// Write-side: the request itself is inconsistent.
    case invalidTensor(tensor: String, reason: String)

    public var description: String {
        switch self {
        case let .io(path, message):
            "\(path): \(message)"
        case let .fileTooShort(path, size):
            "\(path): only \(size) bytes; a safetensors file starts with an 8-byte header length"
        case let .headerLengthTooLarge(path, n, size):
            "\(path): header length prefix says \(n) bytes but the file has \(size) bytes "
                + "(limit 100 MB); the file is truncated or not a safetensors file"
        case let .invalidHeader(path, reason):
            "\(path): invalid JSON header: \(reason)"
        case let .invalidEntry(path, tensor, reason):
            "\(path): tensor '\(tensor)': \(reason)"
        case let .unknownDType(path, tensor, dtype):
            "\(path): tensor '\(tensor)' has dtype '\(dtype)'; supported: "
                + TensorDType.allCases.map(\.rawValue).joined(separator: ", ")
        case let .byteCountMismatch(path, tensor, expected, actual):
            "\(path): tensor '\(tensor)': shape and dtype need \(expected) bytes but data_offsets "
                + "span \(actual)"
        case let .overlappingTensors(path, tensor, previous):
            "\(path): tensor '\(tensor)' overlaps tensor '\(previous)'"
        case let .gapBeforeTensor(path, tensor, gap):
            "\(path): \(gap) unused bytes before tensor '\(tensor)'; tensors must be contiguous"
        case let .tensorOutOfBounds(path, tensor, end, length):
            "\(path): tensor '\(tensor)' ends at data byte \(end) but the data section has only "
                + "\(length) bytes; the file is truncated"
        case let .trailingBytes(path, used, length):
            "\(path): tensors use \(used) bytes but the data section has \(length); "
                + "unexpected trailing bytes"
        case let .tensorNotFound(path, tensor):
            "\(path): no tensor named '\(tensor)'"
        case let .dtypeMismatch(path, tensor, stored, requested):
            "\(path): tensor '\(tensor)' is \(stored.rawValue), not \(requested.rawValue)"
        case let .invalidTensor(tensor, reason):
            "cannot write tensor '\(tensor)': \(reason)"
        }
    }
}

/// Reference implementation's header cap.
let safeTensorsMaxHeaderBytes = 100_000_000

// MARK: - Writing

/// Writes safetensors files by streaming: the header first, then each tensor's bytes straight
/// from its buffer, so no file-sized buffer is ever built.
public enum SafeTensorsWriter {
    /// Writes `tensors` (in this order) to `url`, replacing any existing file. Does not fsync;
    /// `CheckpointStore` does that for every file it commits.
    public static func write(to url: URL, metadata: [String: String] = [:], tensors: [SafeTensor]) throws {
        let header = try headerBytes(metadata: metadata, tensors: tensors)
        try fileIO {
            let file = try DataFile(url.path, .create)
            var prefix = UInt64(header.count).littleEndian
            try withUnsafeBytes(of: &prefix) { try file.write($0) }
            try header.withUnsafeBytes { try file.write($0) }
            for tensor in tensors {
                var written = 0
                try tensor.data.emitBytes { chunk in
                    written += chunk.count
                    guard written <= tensor.byteCount else { return }
                    try file.write(chunk)
                }
                guard written == tensor.byteCount else {
                    throw SafeTensorsError.invalidTensor(
                        tensor: tensor.name,
                        reason: "data source produced \(written) bytes, shape \(tensor.shape) needs \(tensor.byteCount)")
                }
            }
            try file.close()
        }
    }

    /// The padded JSON header (without the 8-byte length prefix) for `tensors` laid out in order.
    public static func headerBytes(metadata: [String: String], tensors: [SafeTensor]) throws -> [UInt8] {
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += jsonString("__metadata__") + ":{"
            json += metadata.sorted { $0.key < $1.key }
                .map { jsonString($0.key) + ":" + jsonString($0.value) }
                .joined(separator: ",")
            json += "}"
            first = false
        }
        var seen = Set<String>()
        var offset = 0
        for tensor in tensors {
            try validate(tensor)
            guard seen.insert(tensor.name).inserted else {
                throw SafeTensorsError.invalidTensor(tensor: tensor.name, reason: "duplicate name")
            }
            let end = offset + tensor.byteCount
            if !first { json += "," }
            first = false
            json += jsonString(tensor.name)
            json += ":{\"dtype\":\"\(tensor.dtype.rawValue)\",\"shape\":["
            json += tensor.shape.map(String.init).joined(separator: ",")
            json += "],\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        json += "}"
        var bytes = Array(json.utf8)
        let padded = (bytes.count + 7) / 8 * 8
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padded - bytes.count))
        return bytes
    }

    private static func validate(_ tensor: SafeTensor) throws {
        if tensor.name.isEmpty || tensor.name == "__metadata__" {
            throw SafeTensorsError.invalidTensor(tensor: tensor.name, reason: "reserved or empty name")
        }
        if tensor.shape.contains(where: { $0 < 0 }) {
            throw SafeTensorsError.invalidTensor(tensor: tensor.name, reason: "negative dimension in \(tensor.shape)")
        }
        if let count = tensor.data.storedCount, count != tensor.elementCount {
            throw SafeTensorsError.invalidTensor(
                tensor: tensor.name,
                reason: "shape \(tensor.shape) has \(tensor.elementCount) elements but the data has \(count)")
        }
    }

    /// A JSON string literal, escaping quotes, backslashes and control characters.
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

// MARK: - Reading

/// A validated safetensors file. `init` checks the whole layout (header length, JSON, dtypes,
/// byte counts, contiguous in-bounds offsets) and throws `SafeTensorsError` saying what is wrong;
/// after that every accessor only has to check names and dtypes.
public struct SafeTensorsFile: Sendable {
    public let url: URL
    public let metadata: [String: String]
    /// Tensors in file order.
    public let tensors: [TensorInfo]
    /// Offset of the data section from the start of the file (8 + header length).
    public let dataOffset: Int
    private let contents: Data
    private let index: [String: Int]

    /// Tensor names in file order.
    public var names: [String] { tensors.map(\.name) }

    public init(url: URL) throws {
        let path = url.path
        let contents: Data
        do {
            contents = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw SafeTensorsError.io(path: path, message: "cannot read: \(error.localizedDescription)")
        }
        try self.init(url: url, contents: contents)
    }

    /// Parses a file already in memory (`url` is only used in messages).
    public init(url: URL, contents: Data) throws {
        let path = url.path
        self.url = url
        self.contents = contents
        let size = contents.count
        guard size >= 8 else { throw SafeTensorsError.fileTooShort(path: path, size: size) }
        let n = contents.withUnsafeBytes { raw in
            UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        }
        guard n <= UInt64(size - 8), n <= UInt64(safeTensorsMaxHeaderBytes) else {
            throw SafeTensorsError.headerLengthTooLarge(path: path, headerLength: n, fileSize: size)
        }
        let headerLength = Int(n)
        dataOffset = 8 + headerLength
        let dataLength = size - dataOffset
        let headerData = contents.subdata(in: contents.startIndex + 8 ..< contents.startIndex + dataOffset)
        let (metadata, infos) = try Self.parseHeader(headerData, dataLength: dataLength, path: path)
        self.metadata = metadata
        self.tensors = infos
        self.index = Dictionary(uniqueKeysWithValues: infos.enumerated().map { ($1.name, $0) })
    }

    /// Parses and validates a JSON header (without the 8-byte length prefix) against a data
    /// section of `dataLength` bytes: dtypes, byte counts, tensors contiguous and in bounds and
    /// filling the data section exactly. Returns the metadata and the tensors sorted by offset.
    /// Shared by `init` and `SafeTensorsStream`, so both accept exactly the same files.
    static func parseHeader(_ headerData: Data, dataLength: Int, path: String) throws -> ([String: String], [TensorInfo]) {
        let root: JSONValue
        do {
            root = try JSONDecoder().decode(JSONValue.self, from: headerData)
        } catch {
            throw SafeTensorsError.invalidHeader(path: path, reason: Self.describe(error))
        }
        guard case .object(let entries) = root else {
            throw SafeTensorsError.invalidHeader(path: path, reason: "top level is not a JSON object")
        }

        var metadata: [String: String] = [:]
        var infos: [TensorInfo] = []
        for (name, entry) in entries {
            if name == "__metadata__" {
                guard case .object(let fields) = entry else {
                    throw SafeTensorsError.invalidHeader(path: path, reason: "__metadata__ is not an object")
                }
                for (key, value) in fields {
                    guard case .string(let s) = value else {
                        throw SafeTensorsError.invalidHeader(
                            path: path, reason: "__metadata__ value for '\(key)' is not a string")
                    }
                    metadata[key] = s
                }
                continue
            }
            infos.append(try Self.parseEntry(name: name, entry: entry, path: path))
        }

        // Layout: sorted by offset, the tensors must tile the data section exactly.
        infos.sort { ($0.byteRange.lowerBound, $0.byteRange.upperBound, $0.name)
            < ($1.byteRange.lowerBound, $1.byteRange.upperBound, $1.name) }
        var cursor = 0
        var previous: String?
        for info in infos {
            let range = info.byteRange
            if range.lowerBound < cursor, let previous {
                throw SafeTensorsError.overlappingTensors(path: path, tensor: info.name, previous: previous)
            }
            if range.lowerBound > cursor {
                // A gap past the end of the file is really a truncation; say so.
                if range.upperBound > dataLength {
                    throw SafeTensorsError.tensorOutOfBounds(
                        path: path, tensor: info.name, end: range.upperBound, dataLength: dataLength)
                }
                throw SafeTensorsError.gapBeforeTensor(path: path, tensor: info.name, gapBytes: range.lowerBound - cursor)
            }
            if range.upperBound > dataLength {
                throw SafeTensorsError.tensorOutOfBounds(
                    path: path, tensor: info.name, end: range.upperBound, dataLength: dataLength)
            }
            cursor = range.upperBound
            previous = info.name
        }
        guard cursor == dataLength else {
            throw SafeTensorsError.trailingBytes(path: path, used: cursor, dataLength: dataLength)
        }
        return (metadata, infos)
    }

    private static func parseEntry(name: String, entry: JSONValue, path: String) throws -> TensorInfo {
        func bad(_ reason: String) -> SafeTensorsError {
            .invalidEntry(path: path, tensor: name, reason: reason)
        }
        guard case .object(let fields) = entry else { throw bad("entry is not an object") }
        guard case .string(let dtypeName)? = fields["dtype"] else { throw bad("missing string 'dtype'") }
        guard let dtype = TensorDType(rawValue: dtypeName) else {
            throw SafeTensorsError.unknownDType(path: path, tensor: name, dtype: dtypeName)
        }
        guard case .array(let dims)? = fields["shape"] else { throw bad("missing array 'shape'") }
        var shape: [Int] = []
        for dim in dims {
            guard let d = dim.exactInt, d >= 0 else { throw bad("shape \(dims) has a non-integer or negative dimension") }
            shape.append(d)
        }
        guard case .array(let offsets)? = fields["data_offsets"], offsets.count == 2,
              let begin = offsets[0].exactInt, let end = offsets[1].exactInt, begin >= 0, end >= begin
        else { throw bad("'data_offsets' must be [begin, end] with 0 <= begin <= end") }
        var elements = 1
        for d in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow else { throw bad("shape \(shape) is too large") }
            elements = product
        }
        let (expected, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow, expected == end - begin else {
            throw SafeTensorsError.byteCountMismatch(
                path: path, tensor: name, expected: overflow ? Int.max : expected, actual: end - begin)
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, byteRange: begin ..< end)
    }

    private static func describe(_ error: Error) -> String {
        if case DecodingError.dataCorrupted(let context) = error {
            let underlying = context.underlyingError.map { " (\($0))" } ?? ""
            return context.debugDescription + underlying
        }
        return String(describing: error)
    }

    // MARK: Access

    public func info(_ name: String) throws -> TensorInfo {
        guard let i = index[name] else {
            throw SafeTensorsError.tensorNotFound(path: url.path, tensor: name)
        }
        return tensors[i]
    }

    public func contains(_ name: String) -> Bool { index[name] != nil }

    public func floats(_ name: String) throws -> [Float] { try elements(name, .f32) }
    public func doubles(_ name: String) throws -> [Double] { try elements(name, .f64) }
    public func int32s(_ name: String) throws -> [Int32] { try elements(name, .i32) }
    public func int64s(_ name: String) throws -> [Int64] { try elements(name, .i64) }
    public func bytes(_ name: String) throws -> [UInt8] { try elements(name, .u8) }

    /// Copies a tensor's raw bytes into `destination`, which must be exactly its size
    /// (for loading straight into a model's parameter buffer).
    public func copyBytes(_ name: String, into destination: UnsafeMutableRawBufferPointer) throws {
        let info = try info(name)
        guard destination.count == info.byteRange.count else {
            throw SafeTensorsError.invalidTensor(
                tensor: name, reason: "destination holds \(destination.count) bytes, tensor has \(info.byteRange.count)")
        }
        copyRaw(info, into: destination)
    }

    private func elements<T>(_ name: String, _ dtype: TensorDType) throws -> [T] {
        let info = try info(name)
        guard info.dtype == dtype else {
            throw SafeTensorsError.dtypeMismatch(path: url.path, tensor: name, stored: info.dtype, requested: dtype)
        }
        let count = info.elementCount
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            copyRaw(info, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    private func copyRaw(_ info: TensorInfo, into destination: UnsafeMutableRawBufferPointer) {
        guard !info.byteRange.isEmpty else { return }
        contents.withUnsafeBytes { raw in
            let start = dataOffset + info.byteRange.lowerBound
            destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[start ..< start + info.byteRange.count]))
        }
    }
}

// MARK: - File funnel

/// Runs file operations (`DataFile`), turning their error into `SafeTensorsError.io`.
func fileIO<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as FileIOError {
        throw SafeTensorsError.io(path: error.path, message: "\(error.operation) failed: \(error.message)")
    }
}
