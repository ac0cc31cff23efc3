// Byte-level file I/O for the data paths: a chunked line reader (lines as raw bytes, bounded
// memory even for over-long lines) and a buffered writer, on `DataFile` (FileAccess), typed errors.
@_exported import FileAccess

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SystemPackage

/// Reads a file as lines of bytes, in 4 MiB chunks.
///
/// Each line is passed with its trailing "\n" (if any); the last line may lack it. A line longer
/// than `maxLineLength + 3` bytes is passed truncated to that length (so `CriteoParser` with the same
/// `maxLineLength` rejects it as `line_too_long`) and the rest of it is skipped: memory stays bounded.
public struct LineReader {
    public let path: String
    public let maxLineLength: Int
    /// Size of the file when opened (nil if unknown, e.g. a pipe).
    public let fileSize: Int64?

    public init(path: String, maxLineLength: Int = CriteoParser.defaultMaxLineLength) throws(FileIOError) {
        self.path = path
        self.maxLineLength = maxLineLength
        var st = stat()
        if stat(path, &st) != 0 { throw FileIOError("stat", path, Errno(rawValue: errno)) }
        fileSize = (st.st_mode & S_IFMT) == S_IFREG ? Int64(st.st_size) : nil
    }

    /// Calls `body(line, lineNumber)` for every line (line numbers start at 1) and `progress(bytesRead)`
    /// after every chunk. Errors thrown by `body` stop the read and propagate.
    public func forEachLine(progress: ((Int64) -> Void)? = nil,
                            _ body: (UnsafeRawBufferPointer, Int) throws -> Void) throws {
        let file = try DataFile(path, .read)
        let cap = maxLineLength + 3
        let size = max(1 << 22, cap * 2)
        let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        defer { buf.deallocate() }
        var start = 0, end = 0
        var skipping = false
        var lineNumber = 0
        var total: Int64 = 0
        var eof = false
        while true {
            // Deliver every complete line in [start, end).
            while start < end {
                guard let nlp = memchr(buf + start, 0x0A, end - start) else { break }
                let nl = buf.distance(to: nlp)
                if skipping {
                    skipping = false
                } else {
                    lineNumber += 1
                    let len = min(nl + 1 - start, cap)
                    try body(UnsafeRawBufferPointer(start: buf + start, count: len), lineNumber)
                }
                start = nl + 1
            }
            if end - start > cap || (skipping && start < end) {
                if !skipping {
                    lineNumber += 1
                    try body(UnsafeRawBufferPointer(start: buf + start, count: cap), lineNumber)
                    skipping = true
                }
                start = end
            }
            if eof {
                if start < end && !skipping {
                    lineNumber += 1
                    try body(UnsafeRawBufferPointer(start: buf + start, count: end - start), lineNumber)
                }
                return
            }
            if start > 0 {
                if end > start { memmove(buf, buf + start, end - start) }
                end -= start
                start = 0
            }
            let r = try file.read(into: UnsafeMutableRawBufferPointer(start: buf + end, count: size - end))
            if r == 0 { eof = true } else { end += r; total += Int64(r); progress?(total) }
        }
    }
}

/// Reads a whole file into memory.
public func readFileBytes(_ path: String) throws(FileIOError) -> [UInt8] {
    let file = try DataFile(path, .read)
    var out: [UInt8] = []
    let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    defer { chunk.deallocate() }
    while true {
        let r = try file.read(into: chunk)
        if r == 0 { return out }
        out.append(contentsOf: chunk[0..<r])
    }
}

/// A write-only file with a 1 MiB buffer. Call `close()` to flush and see errors.
/// With `atomic: true` it writes `PATH.tmp-PID` and renames it over `PATH` on `close()`.
public final class BufferedFileWriter {
    public let path: String
    let writePath: String
    let file: DataFile
    public var buffer: [UInt8] = []
    let flushAt = 1 << 20

    public init(path: String, atomic: Bool = false) throws(FileIOError) {
        self.path = path
        writePath = atomic ? "\(path).tmp-\(getpid())" : path
        file = try DataFile(writePath, .create)
        buffer.reserveCapacity(flushAt + 65536)
    }

    public func write(_ bytes: some Sequence<UInt8>) throws(FileIOError) {
        buffer.append(contentsOf: bytes)
        if buffer.count >= flushAt { try flush() }
    }

    /// Flushes if the buffer is full (call after appending to `buffer` directly).
    public func maybeFlush() throws(FileIOError) {
        if buffer.count >= flushAt { try flush() }
    }

    public func flush() throws(FileIOError) {
        do {
            try buffer.withUnsafeBytes { try file.write($0) }
        } catch let error as FileIOError {
            throw error
        } catch {
            throw FileIOError("write", writePath, message: "\(error)")
        }
        buffer.removeAll(keepingCapacity: true)
    }

    public func close() throws(FileIOError) {
        try flush()
        try file.close()
        if writePath != path && rename(writePath, path) != 0 {
            throw FileIOError("rename", writePath, Errno(rawValue: errno))
        }
    }
}

