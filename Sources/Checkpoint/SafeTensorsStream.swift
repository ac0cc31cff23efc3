// SafeTensorsStream: read a safetensors file once, front to back, with plain read(2) calls,
// hashing every byte (SHA-256) on the way and putting each wanted tensor's bytes straight where
// the caller wants them.
//
// `SafeTensorsFile` maps the file and copies tensors out of the mapping into arrays; a caller
// that also verifies the file's checksum reads it a second time. For a loader that runs while a
// server answers requests (the inference worker's hot reload) that costs: the mapped pages count
// in the process's resident set while they are touched, every tensor is copied twice (mapping →
// array → model), and the whole file is read twice. Here the file is read once, in chunks of at
// most `chunkBytes`, nothing is mapped, and tensors nobody wants (optimizer state) only pass
// through one small scratch buffer for hashing.
//
// The header is validated by the same code as `SafeTensorsFile` (`parseHeader`), so both accept
// exactly the same files. The digest is returned, not checked: compare it with the manifest
// before trusting anything that was read.

import Crypto
import FileAccess
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum SafeTensorsStream {
    /// Where the bytes of one tensor go.
    public enum Destination {
        /// Read (for the digest) and drop.
        case skip
        /// Read into these buffers, one after another; their sizes must add up to the tensor's
        /// byte count. The buffers must stay valid until `read` returns.
        case into([UnsafeMutableRawBufferPointer])
    }

    /// A validated header: what the file holds, before any tensor byte is read.
    public struct Header: Sendable {
        public let metadata: [String: String]
        /// Tensors sorted by offset (they tile the data section).
        public let tensors: [TensorInfo]
        public let dataOffset: Int
        public let fileBytes: Int

        public func info(_ name: String) -> TensorInfo? { tensors.first { $0.name == name } }
    }

    /// Reads the file at `url` once. `plan` sees the validated header and returns where each
    /// tensor goes (tensors it does not name are skipped); it may throw to stop early (e.g. a
    /// shape that does not fit). `afterChunk` runs after every chunk (a loader can yield there).
    /// Returns the size and sha256 of every byte of the file.
    public static func read(url: URL, chunkBytes: Int = 1 << 20,
                            plan: (Header) throws -> [String: Destination],
                            afterChunk: () -> Void = {}) throws -> FileDigest {
        let path = url.path
        let file = try fileIO { try DataFile(path, .read) }
        let size = try fileIO { try file.size() }
        file.adviseSequential()
        var hasher = SHA256()

        guard size >= 8 else { throw SafeTensorsError.fileTooShort(path: path, size: size) }
        var prefix: UInt64 = 0
        try withUnsafeMutableBytes(of: &prefix) { raw in
            try fileIO { try file.readFully(into: raw) }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(raw))
        }
        let n = UInt64(littleEndian: prefix)
        guard n <= UInt64(size - 8), n <= UInt64(safeTensorsMaxHeaderBytes) else {
            throw SafeTensorsError.headerLengthTooLarge(path: path, headerLength: n, fileSize: size)
        }
        var headerData = Data(count: Int(n))
        try headerData.withUnsafeMutableBytes { raw in
            try fileIO { try file.readFully(into: raw) }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(raw))
        }
        let dataOffset = 8 + Int(n)
        let (metadata, infos) = try SafeTensorsFile.parseHeader(headerData, dataLength: size - dataOffset, path: path)
        let destinations = try plan(Header(metadata: metadata, tensors: infos, dataOffset: dataOffset, fileBytes: size))
        for (name, destination) in destinations {
            guard let info = infos.first(where: { $0.name == name }) else {
                throw SafeTensorsError.tensorNotFound(path: path, tensor: name)
            }
            if case .into(let buffers) = destination {
                let total = buffers.reduce(0) { $0 + $1.count }
                guard total == info.byteRange.count else {
                    throw SafeTensorsError.invalidTensor(
                        tensor: name, reason: "destination holds \(total) bytes, tensor has \(info.byteRange.count)")
                }
            }
        }

        let chunk = max(4096, chunkBytes)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { scratch.deallocate() }
        // Tensors tile the data section in `infos` order, so reading them in order reads the file.
        for info in infos {
            switch destinations[info.name] ?? .skip {
            case .skip:
                var remaining = info.byteRange.count
                while remaining > 0 {
                    let piece = UnsafeMutableRawBufferPointer(rebasing: scratch[0 ..< min(chunk, remaining)])
                    try fileIO { try file.readFully(into: piece) }
                    hasher.update(bufferPointer: UnsafeRawBufferPointer(piece))
                    remaining -= piece.count
                    afterChunk()
                }
            case .into(let buffers):
                for buffer in buffers {
                    var offset = 0
                    while offset < buffer.count {
                        let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[offset ..< min(buffer.count, offset + chunk)])
                        try fileIO { try file.readFully(into: piece) }
                        hasher.update(bufferPointer: UnsafeRawBufferPointer(piece))
                        offset += piece.count
                        afterChunk()
                    }
                }
            }
        }
        return FileDigest(sha256: CheckpointStore.hex(hasher.finalize()), bytes: size)
    }
}

