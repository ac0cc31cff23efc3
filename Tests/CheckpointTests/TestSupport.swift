// Shared helpers for the checkpoint tests: temp directories and raw file surgery.

import Foundation

/// Runs `body` with a fresh empty directory that is deleted afterwards.
func withTempDirectory<T>(_ body: (URL) throws -> T) throws -> T {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("streamrec-ckpt-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: url) }
    return try body(url)
}

/// A safetensors file assembled by hand, so tests can write headers the writer never would.
func rawSafeTensors(header: String, data: [UInt8]) -> Data {
    var bytes = Array(header.utf8)
    while bytes.count % 8 != 0 { bytes.append(UInt8(ascii: " ")) }
    var out = Data()
    withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { out.append(contentsOf: $0) }
    out.append(contentsOf: bytes)
    out.append(contentsOf: data)
    return out
}

/// Rewrites one byte of a file in place.
func flipByte(in url: URL, at offset: Int) throws {
    var data = try Data(contentsOf: url)
    data[data.startIndex + offset] ^= 0xFF
    try data.write(to: url)
}

/// Cuts a file down to `length` bytes.
func truncate(_ url: URL, to length: Int) throws {
    let handle = try FileHandle(forWritingTo: url)
    try handle.truncate(atOffset: UInt64(length))
    try handle.close()
}

func fileSize(_ url: URL) throws -> Int {
    try (FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue ?? -1
}
