// SafeTensors: round trips, header layout, rejection of corrupted files, and an independent
// Python + numpy reader.

import Foundation
import Testing
@testable import Checkpoint

/// A file exercising every dtype, a scalar, empty tensors and a streamed tensor.
private func sampleTensors() -> [SafeTensor] {
    let streamed = (0 ..< 6).map { Float($0) * -1.5 }
    return [
        SafeTensor(name: "dense.weight", shape: [2, 3], data: .float([0.25, -1, 2.5, 3, 4.75, -5])),
        SafeTensor(name: "dense.bias", shape: [3], data: .double([1e-3, 2, -3.5])),
        SafeTensor(name: "ids", shape: [3, 1], data: .int32([7, -8, Int32.max])),
        SafeTensor(name: "counts", shape: [2], data: .int64([Int64(1) << 40, -3])),
        SafeTensor(name: "flags", shape: [5], data: .uint8([0, 1, 2, 254, 255])),
        SafeTensor(name: "scalar", shape: [], data: .float([42])),
        SafeTensor(name: "empty", shape: [0], data: .float([])),
        SafeTensor(name: "empty2d", shape: [4, 0], data: .int64([])),
        SafeTensor(name: "streamed", shape: [2, 3], data: .stream(.f32) { emit in
            // Two chunks, as a model writing from slices of its parameter buffer would.
            try streamed.withUnsafeBytes { raw in
                try emit(UnsafeRawBufferPointer(rebasing: raw[0 ..< 8]))
                try emit(UnsafeRawBufferPointer(rebasing: raw[8...]))
            }
        }),
    ]
}

@Test func roundTripEveryDTypeAndShape() throws {
    try withTempDirectory { dir in
        let url = dir.appendingPathComponent("t.safetensors")
        let tensors = sampleTensors()
        try SafeTensorsWriter.write(to: url, metadata: ["model": "widedeep", "quote\"d": "a\\b\n"], tensors: tensors)

        let file = try SafeTensorsFile(url: url)
        #expect(file.names == tensors.map(\.name))
        #expect(file.metadata == ["model": "widedeep", "quote\"d": "a\\b\n"])
        for tensor in tensors {
            let info = try file.info(tensor.name)
            #expect(info.dtype == tensor.dtype)
            #expect(info.shape == tensor.shape)
            #expect(info.byteRange.count == tensor.byteCount)
        }
        #expect(try file.floats("dense.weight") == [0.25, -1, 2.5, 3, 4.75, -5])
        #expect(try file.doubles("dense.bias") == [1e-3, 2, -3.5])
        #expect(try file.int32s("ids") == [7, -8, Int32.max])
        #expect(try file.int64s("counts") == [Int64(1) << 40, -3])
        #expect(try file.bytes("flags") == [0, 1, 2, 254, 255])
        #expect(try file.floats("scalar") == [42])
        #expect(try file.floats("empty") == [])
        #expect(try file.int64s("empty2d") == [])
        #expect(try file.floats("streamed") == (0 ..< 6).map { Float($0) * -1.5 })

        // Tensors are contiguous in the order given.
        var cursor = 0
        for info in file.tensors {
            #expect(info.byteRange.lowerBound == cursor)
            cursor = info.byteRange.upperBound
        }
        #expect(try fileSize(url) == file.dataOffset + cursor)

        // copyBytes loads straight into a caller's buffer and checks its size.
        var weights = [Float](repeating: 0, count: 6)
        try weights.withUnsafeMutableBytes { try file.copyBytes("dense.weight", into: $0) }
        #expect(weights == [0.25, -1, 2.5, 3, 4.75, -5])
        var tooSmall = [Float](repeating: 0, count: 5)
        #expect(throws: SafeTensorsError.self) {
            try tooSmall.withUnsafeMutableBytes { try file.copyBytes("dense.weight", into: $0) }
        }
    }
}

@Test func headerIsSpacePaddedToEightBytes() throws {
    try withTempDirectory { dir in
        // Names of every length 1...9 move the unpadded header length through all residues mod 8.
        for length in 1 ... 9 {
            let url = dir.appendingPathComponent("h\(length).safetensors")
            let name = String(repeating: "n", count: length)
            try SafeTensorsWriter.write(to: url, tensors: [SafeTensor.vector(name, [1, 2, 3])])
            let data = try Data(contentsOf: url)
            let n = data.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
            #expect(n % 8 == 0, "header length \(n) for name length \(length)")
            let header = data[8 ..< 8 + n]
            let json = String(decoding: header, as: UTF8.self)
            let trimmed = json.replacingOccurrences(of: " +$", with: "", options: .regularExpression)
            #expect(trimmed.hasSuffix("}"))
            #expect(json.count - trimmed.count < 8, "padding is less than 8 spaces")
            #expect(data.count == 8 + n + 12)
            #expect(try SafeTensorsFile(url: url).floats(name) == [1, 2, 3])
        }
    }
}

// MARK: - Corrupted files

/// Parses `data` and returns the SafeTensorsError it throws (nil, and a failed expectation, if none).
private func parseError(_ data: Data, sourceLocation: SourceLocation = #_sourceLocation) -> SafeTensorsError? {
    #expect(throws: SafeTensorsError.self, sourceLocation: sourceLocation) {
        _ = try SafeTensorsFile(url: URL(fileURLWithPath: "/test.safetensors"), contents: data)
    }
}

private func goodFileBytes() throws -> Data {
    try withTempDirectory { dir in
        let url = dir.appendingPathComponent("good.safetensors")
        try SafeTensorsWriter.write(to: url, metadata: ["k": "v"], tensors: sampleTensors())
        return try Data(contentsOf: url)
    }
}

@Test func rejectsTruncatedFiles() throws {
    let good = try goodFileBytes()
    _ = try SafeTensorsFile(url: URL(fileURLWithPath: "/good"), contents: good)

    guard case .tensorOutOfBounds(_, let tensor, _, _)? = parseError(good.prefix(good.count - 3)) else {
        Issue.record("cut in the data section should be tensorOutOfBounds")
        return
    }
    #expect(tensor == "streamed", "the last tensor is the one cut off")

    guard case .headerLengthTooLarge? = parseError(good.prefix(40)) else {
        Issue.record("cut inside the header should be headerLengthTooLarge")
        return
    }
    guard case .fileTooShort(_, let size)? = parseError(good.prefix(5)) else {
        Issue.record("a 5-byte file should be fileTooShort")
        return
    }
    #expect(size == 5)
}

@Test func rejectsHeaderLengthBeyondFile() throws {
    var bad = try goodFileBytes()
    let huge = UInt64(bad.count)
    withUnsafeBytes(of: huge.littleEndian) { bad.replaceSubrange(0 ..< 8, with: $0) }
    guard case .headerLengthTooLarge(_, let n, let size)? = parseError(bad) else {
        Issue.record("expected headerLengthTooLarge")
        return
    }
    #expect(n == huge)
    #expect(size == bad.count)

    var absurd = try goodFileBytes()
    withUnsafeBytes(of: UInt64.max.littleEndian) { absurd.replaceSubrange(0 ..< 8, with: $0) }
    guard case .headerLengthTooLarge? = parseError(absurd) else {
        Issue.record("expected headerLengthTooLarge for UInt64.max")
        return
    }
}

@Test func rejectsBadJSON() throws {
    var bad = try goodFileBytes()
    bad[8] = UInt8(ascii: "x") // the header's opening brace
    guard case .invalidHeader? = parseError(bad) else {
        Issue.record("expected invalidHeader")
        return
    }
    guard case .invalidHeader? = parseError(rawSafeTensors(header: "[1, 2]", data: [])) else {
        Issue.record("a JSON array header should be invalidHeader")
        return
    }
    guard case .invalidHeader? = parseError(rawSafeTensors(header: #"{"__metadata__": {"a": 1}}"#, data: [])) else {
        Issue.record("non-string metadata should be invalidHeader")
        return
    }
}

@Test func rejectsOverlappingOffsets() throws {
    let header = #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},"#
        + #" "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#
    guard case .overlappingTensors(_, let tensor, let previous)? =
        parseError(rawSafeTensors(header: header, data: Array(repeating: 0, count: 12)))
    else {
        Issue.record("expected overlappingTensors")
        return
    }
    #expect(tensor == "b")
    #expect(previous == "a")
}

@Test func rejectsWrongByteCount() throws {
    let header = #"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#
    guard case .byteCountMismatch(_, let tensor, let expected, let actual)? =
        parseError(rawSafeTensors(header: header, data: Array(repeating: 0, count: 8)))
    else {
        Issue.record("expected byteCountMismatch")
        return
    }
    #expect(tensor == "a")
    #expect(expected == 12)
    #expect(actual == 8)
}

@Test func rejectsGapsTrailingBytesAndUnknownDTypes() throws {
    let gap = #"{"a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}}"#
    guard case .gapBeforeTensor(_, "a", 2)? = parseError(rawSafeTensors(header: gap, data: [1, 2, 3, 4])) else {
        Issue.record("expected gapBeforeTensor")
        return
    }
    let short = #"{"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}"#
    guard case .trailingBytes(_, 2, 5)? = parseError(rawSafeTensors(header: short, data: [1, 2, 3, 4, 5])) else {
        Issue.record("expected trailingBytes")
        return
    }
    let bf16 = #"{"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}"#
    guard case .unknownDType(_, "a", "BF16")? = parseError(rawSafeTensors(header: bf16, data: [1, 2, 3, 4])) else {
        Issue.record("expected unknownDType")
        return
    }
    let negative = #"{"a": {"dtype": "U8", "shape": [-2], "data_offsets": [0, 2]}}"#
    guard case .invalidEntry(_, "a", _)? = parseError(rawSafeTensors(header: negative, data: [1, 2])) else {
        Issue.record("expected invalidEntry for a negative dimension")
        return
    }
    let reversed = #"{"a": {"dtype": "U8", "shape": [0], "data_offsets": [2, 0]}}"#
    guard case .invalidEntry? = parseError(rawSafeTensors(header: reversed, data: [1, 2])) else {
        Issue.record("expected invalidEntry for end < begin")
        return
    }
}

@Test func errorsSayWhatIsWrong() throws {
    let header = #"{"emb": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#
    let error = parseError(rawSafeTensors(header: header, data: Array(repeating: 0, count: 8)))
    let text = error.map(String.init(describing:)) ?? ""
    #expect(text.contains("emb") && text.contains("12") && text.contains("8"), "\(text)")

    let file = try SafeTensorsFile(url: URL(fileURLWithPath: "/x"), contents: try goodFileBytes())
    #expect(throws: SafeTensorsError.tensorNotFound(path: "/x", tensor: "nope")) { try file.floats("nope") }
    #expect(throws: SafeTensorsError.dtypeMismatch(path: "/x", tensor: "ids", stored: .i32, requested: .f32)) {
        try file.floats("ids")
    }
}

@Test func writerRejectsInconsistentTensors() throws {
    try withTempDirectory { dir in
        let url = dir.appendingPathComponent("w.safetensors")
        #expect(throws: SafeTensorsError.self) {
            try SafeTensorsWriter.write(to: url, tensors: [SafeTensor(name: "a", shape: [2, 2], data: .float([1, 2, 3]))])
        }
        #expect(throws: SafeTensorsError.self) {
            try SafeTensorsWriter.write(to: url, tensors: [.vector("a", [1]), .vector("a", [2])])
        }
        #expect(throws: SafeTensorsError.self) {
            try SafeTensorsWriter.write(to: url, tensors: [.vector("__metadata__", [1])])
        }
        let shortStream = SafeTensor(name: "s", shape: [4], data: .stream(.f32) { emit in
            try [Float(1)].withUnsafeBytes { try emit($0) }
        })
        #expect(throws: SafeTensorsError.self) { try SafeTensorsWriter.write(to: url, tensors: [shortStream]) }
    }
}

// MARK: - Independent reader

/// True when `python3` runs and can import numpy.
func pythonHasNumpy() -> Bool {
    (try? runPython(["-c", "import numpy"]))?.status == 0
}

func runPython(_ arguments: [String]) throws -> (status: Int32, stdout: Data, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3"] + arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, stdout, String(decoding: stderr, as: UTF8.self))
}

/// Reads a safetensors file with nothing but json, struct and numpy, and prints per tensor
/// dtype, shape and the float64 sum of its values.
private let numpyReader = """
import json, struct, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + n])
meta = header.pop("__metadata__", {})
kinds = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8", "U8": "u1"}
out = {"header_length": n, "metadata": meta, "tensors": {}}
for name, t in header.items():
    begin, end = t["data_offsets"]
    a = np.frombuffer(raw[8 + n + begin:8 + n + end], dtype=kinds[t["dtype"]]).reshape(t["shape"])
    out["tensors"][name] = {"dtype": t["dtype"], "shape": list(a.shape),
                            "sum": float(a.astype(np.float64).sum())}
print(json.dumps(out))
"""

@Test(.enabled(if: pythonHasNumpy(), "python3 with numpy not found: skipping the independent reader check"))
func pythonNumpyReadsWhatWeWrite() throws {
    try withTempDirectory { dir in
        let url = dir.appendingPathComponent("py.safetensors")
        let tensors = sampleTensors()
        try SafeTensorsWriter.write(to: url, metadata: ["format": "pt", "step": "12"], tensors: tensors)
        let file = try SafeTensorsFile(url: url)

        let result = try runPython(["-c", numpyReader, url.path])
        #expect(result.status == 0, "python reader failed: \(result.stderr)")
        let report = try JSONDecoder().decode(JSONValue.self, from: result.stdout)
        #expect(report["header_length"]?.exactInt == file.dataOffset - 8)
        #expect(report["metadata"] == ["format": "pt", "step": "12"])
        guard case .object(let seen)? = report["tensors"] else {
            Issue.record("no tensors in python output: \(String(decoding: result.stdout, as: UTF8.self))")
            return
        }
        #expect(Set(seen.keys) == Set(tensors.map(\.name)))

        for tensor in tensors {
            let swiftSum: Double = switch tensor.dtype {
            case .f32: try file.floats(tensor.name).reduce(0) { $0 + Double($1) }
            case .f64: try file.doubles(tensor.name).reduce(0, +)
            case .i32: try file.int32s(tensor.name).reduce(0) { $0 + Double($1) }
            case .i64: try file.int64s(tensor.name).reduce(0) { $0 + Double($1) }
            case .u8: try file.bytes(tensor.name).reduce(0) { $0 + Double($1) }
            }
            let entry = seen[tensor.name]
            #expect(entry?["dtype"]?.stringValue == tensor.dtype.rawValue, "\(tensor.name)")
            #expect(entry?["shape"] == .array(tensor.shape.map { .number(Double($0)) }), "\(tensor.name)")
            let pySum = entry?["sum"]?.doubleValue ?? .nan
            #expect(abs(pySum - swiftSum) <= 1e-12 * max(1, abs(swiftSum)), "\(tensor.name): numpy \(pySum) vs swift \(swiftSum)")
        }
    }
}

// MARK: - Reference implementation

/// Written by Python `safetensors` 0.8.0: `save_file({"z": np.arange(6, dtype=np.float32).reshape(2, 3),
/// "q": np.array([1, 2], dtype=np.int64)}, path, metadata={"a": "b"})`.
private let referenceFile = Data(base64Encoded: """
    kAAAAAAAAAB7Il9fbWV0YWRhdGFfXyI6eyJhIjoiYiJ9LCJxIjp7ImR0eXBlIjoiSTY0Iiwic2hhcGUiOlsyXSwiZGF0YV9vZmZzZXRzIjpbMC\
    wxNl19LCJ6Ijp7ImR0eXBlIjoiRjMyIiwic2hhcGUiOlsyLDNdLCJkYXRhX29mZnNldHMiOlsxNiw0MF19fSAgICAgICABAAAAAAAAAAIAAAAA\
    AAAAAAAAAAAAgD8AAABAAABAQAAAgEAAAKBA
    """)!

@Test func readsAndReproducesTheReferenceImplementation() throws {
    let file = try SafeTensorsFile(url: URL(fileURLWithPath: "/reference"), contents: referenceFile)
    #expect(file.metadata == ["a": "b"])
    #expect(file.names == ["q", "z"])
    #expect(try file.int64s("q") == [1, 2])
    #expect(try file.info("z").shape == [2, 3])
    #expect(try file.floats("z") == [0, 1, 2, 3, 4, 5])

    // Same tensors in the reference's order give the same bytes.
    try withTempDirectory { dir in
        let url = dir.appendingPathComponent("ours.safetensors")
        try SafeTensorsWriter.write(to: url, metadata: ["a": "b"], tensors: [
            SafeTensor(name: "q", shape: [2], data: .int64([1, 2])),
            SafeTensor(name: "z", shape: [2, 3], data: .float([0, 1, 2, 3, 4, 5])),
        ])
        #expect(try Data(contentsOf: url) == referenceFile)
    }
}
