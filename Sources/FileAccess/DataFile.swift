// The one file wrapper of the data and checkpoint paths, on swift-system's `FileDescriptor`
// (interrupted calls retried, partial writes completed): open, read, write all, fsync, size,
// close. Every failure is a `FileIOError` with the path, the operation and the system's reason.
import SystemPackage

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

    public init(_ operation: String, _ path: String, _ errno: Errno) {
        self.init(operation, path, message: "\(errno) (errno \(errno.rawValue))")
    }

    public init(_ operation: String, _ path: String, message: String) {
        self.path = path
        self.operation = operation
        self.message = message
    }
}

/// An open file (or directory, to fsync it). Closed by `close()` or when released.
public final class DataFile {
    public enum Mode {
        /// Read-only.
        case read
        /// Write-only, created or truncated (mode 0644).
        case create
    }

    public let path: String
    private var descriptor: FileDescriptor?

    public init(_ path: String, _ mode: Mode) throws(FileIOError) {
        self.path = path
        do {
            switch mode {
            case .read:
                descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
            case .create:
                descriptor = try FileDescriptor.open(FilePath(path), .writeOnly, options: [.create, .truncate, .closeOnExec],
                                                     permissions: [.ownerReadWrite, .groupRead, .otherRead])
            }
        } catch {
            throw Self.failure(mode == .read ? "open" : "create", path, error)
        }
    }

    deinit { try? descriptor?.close() }

    private func open(_ operation: String) throws(FileIOError) -> FileDescriptor {
        guard let descriptor else { throw FileIOError(operation, path, message: "the file is closed") }
        return descriptor
    }

    /// Reads up to `buffer.count` bytes; 0 at the end of the file.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(FileIOError) -> Int {
        let fd = try open("read")
        do { return try fd.read(into: buffer) } catch { throw Self.failure("read", path, error) }
    }

    /// Fills `buffer` completely; a file that ends first is an error (it changed under us).
    public func readFully(into buffer: UnsafeMutableRawBufferPointer) throws(FileIOError) {
        var done = 0
        while done < buffer.count {
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
            if n == 0 { throw FileIOError("read", path, message: "file ended early (it is being truncated or replaced)") }
            done += n
        }
    }

    /// Writes every byte (short writes are continued).
    public func write(_ bytes: UnsafeRawBufferPointer) throws(FileIOError) {
        let fd = try open("write")
        do { _ = try fd.writeAll(bytes) } catch { throw Self.failure("write", path, error) }
    }

    /// fsync(2): the file's data (or a directory's entries) on stable storage.
    public func sync() throws(FileIOError) {
        let fd = try open("fsync")
        guard fsync(fd.rawValue) == 0 else { throw FileIOError("fsync", path, Errno(rawValue: errno)) }
    }

    /// The size in bytes (fstat).
    public func size() throws(FileIOError) -> Int {
        let fd = try open("fstat")
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0 else { throw FileIOError("fstat", path, Errno(rawValue: errno)) }
        return Int(st.st_size)
    }

    /// Tells the kernel the file is read front to back (more read-ahead). Advisory only.
    public func adviseSequential() {
        #if canImport(Glibc)
        if let descriptor { _ = posix_fadvise(descriptor.rawValue, 0, 0, Int32(POSIX_FADV_SEQUENTIAL)) }
        #endif
    }

    /// Closes it; an error here (a deferred write error) is reported.
    public func close() throws(FileIOError) {
        guard let descriptor else { return }
        self.descriptor = nil
        do { try descriptor.close() } catch { throw Self.failure("close", path, error) }
    }

    /// fsyncs a file or directory by path.
    public static func sync(path: String) throws(FileIOError) {
        let file = try DataFile(path, .read)
        try file.sync()
        try file.close()
    }

    static func failure(_ operation: String, _ path: String, _ error: any Error) -> FileIOError {
        if let errno = error as? Errno { return FileIOError(operation, path, errno) }
        return FileIOError(operation, path, message: "\(error)")
    }
}
