// Byte-level file I/O for the data paths: a chunked line reader (lines as raw bytes, bounded
// memory even for over-long lines) and a buffered writer. POSIX calls, typed errors.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed file operation, with the path and the system's reason.
public struct FileIOError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var operation: String
    public var message: String
    public var description: String { "\(operation) \(path): \(message)" }

    init(_ operation: String, _ path: String, errno code: Int32) {
        self.path = path
        self.operation = operation
        self.message = String(cString: strerror(code))
    }
}

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
        if stat(path, &st) != 0 { throw FileIOError("stat", path, errno: errno) }
        fileSize = (st.st_mode & S_IFMT) == S_IFREG ? Int64(st.st_size) : nil
    }

    /// Calls `body(line, lineNumber)` for every line (line numbers start at 1) and `progress(bytesRead)`
    /// after every chunk. Errors thrown by `body` stop the read and propagate.
    public func forEachLine(progress: ((Int64) -> Void)? = nil,
                            _ body: (UnsafeRawBufferPointer, Int) throws -> Void) throws {
        let fd = open(path, O_RDONLY)
        if fd < 0 { throw FileIOError("open", path, errno: errno) }
        defer { close(fd) }
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
            let r = read(fd, buf + end, size - end)
            if r < 0 {
                if errno == EINTR { continue }
                throw FileIOError("read", path, errno: errno)
            }
            if r == 0 { eof = true } else { end += r; total += Int64(r); progress?(total) }
        }
    }
}

/// Reads a whole file into memory.
public func readFileBytes(_ path: String) throws(FileIOError) -> [UInt8] {
    let fd = open(path, O_RDONLY)
    if fd < 0 { throw FileIOError("open", path, errno: errno) }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let r = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if r < 0 {
            if errno == EINTR { continue }
            throw FileIOError("read", path, errno: errno)
        }
        if r == 0 { return out }
        out.append(contentsOf: chunk[0..<r])
    }
}

/// A write-only file with a 1 MiB buffer. Call `close()` to flush and see errors.
/// With `atomic: true` it writes `PATH.tmp-PID` and renames it over `PATH` on `close()`.
public final class BufferedFileWriter {
    public let path: String
    let writePath: String
    var fd: Int32
    public var buffer: [UInt8] = []
    let flushAt = 1 << 20

    public init(path: String, atomic: Bool = false) throws(FileIOError) {
        self.path = path
        writePath = atomic ? "\(path).tmp-\(getpid())" : path
        fd = open(writePath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { throw FileIOError("create", writePath, errno: errno) }
        buffer.reserveCapacity(flushAt + 65536)
    }

    deinit { if fd >= 0 { _ = Glibc_close(fd) } }

    public func write(_ bytes: some Sequence<UInt8>) throws(FileIOError) {
        buffer.append(contentsOf: bytes)
        if buffer.count >= flushAt { try flush() }
    }

    /// Flushes if the buffer is full (call after appending to `buffer` directly).
    public func maybeFlush() throws(FileIOError) {
        if buffer.count >= flushAt { try flush() }
    }

    public func flush() throws(FileIOError) {
        var off = 0
        while off < buffer.count {
            let r = buffer.withUnsafeBytes { posixWrite(fd, $0.baseAddress! + off, $0.count - off) }
            if r < 0 {
                if errno == EINTR { continue }
                throw FileIOError("write", writePath, errno: errno)
            }
            off += r
        }
        buffer.removeAll(keepingCapacity: true)
    }

    public func close() throws(FileIOError) {
        try flush()
        let r = Glibc_close(fd)
        fd = -1
        if r != 0 { throw FileIOError("close", writePath, errno: errno) }
        if writePath != path && rename(writePath, path) != 0 {
            throw FileIOError("rename", writePath, errno: errno)
        }
    }
}

@inline(__always) func Glibc_close(_ fd: Int32) -> Int32 { close(fd) }
@inline(__always) func posixWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }
