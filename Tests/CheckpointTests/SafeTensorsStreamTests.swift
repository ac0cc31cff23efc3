// SafeTensorsStream: one read of the file gives the same tensors and the same sha256 as the
// mapping reader plus `CheckpointStore.digest`, refuses the same broken files, and
// `verify(digestCheckedByCaller:)` leaves exactly the digest to its caller.

import Foundation
import Testing
@testable import Checkpoint

private func streamTensors() -> [SafeTensor] {
    [
        SafeTensor(name: "a", shape: [3, 5], data: .float((0 ..< 15).map { Float($0) * 0.5 - 2 })),
        SafeTensor(name: "skipped", shape: [1000], data: .float((0 ..< 1000).map { Float($0) })),
        SafeTensor(name: "ids", shape: [4], data: .int32([9, -1, 3, Int32.max])),
        SafeTensor(name: "b", shape: [2000], data: .float((0 ..< 2000).map { Float($0) * -0.25 })),
    ]
}

@Test func streamReadsTensorsAndDigestLikeTheMappingReader() throws {
    try withTempDirectory { dir in
        let url = dir.appendingPathComponent("t.safetensors")
        try SafeTensorsWriter.write(to: url, metadata: ["k": "v"], tensors: streamTensors())
        let file = try SafeTensorsFile(url: url)

        var a = [Float](repeating: .nan, count: 15), ids = [Int32](repeating: 0, count: 4)
        var b = [Float](repeating: .nan, count: 2000)
        var seenHeader: SafeTensorsStream.Header?
        var chunks = 0
        let digest = try a.withUnsafeMutableBytes { ra in
            try ids.withUnsafeMutableBytes { ri in
                try b.withUnsafeMutableBytes { rb in
                    // `b` split over two destination buffers, read in 4 KiB chunks.
                    try SafeTensorsStream.read(url: url, chunkBytes: 4096, plan: { header in
                        seenHeader = header
                        return ["a": .into([ra]), "ids": .into([ri]),
                                "b": .into([UnsafeMutableRawBufferPointer(rebasing: rb[0 ..< 4000]),
                                            UnsafeMutableRawBufferPointer(rebasing: rb[4000...])])]
                    }, afterChunk: { chunks += 1 })
                }
            }
        }
        #expect(a == (try file.floats("a")))
        #expect(ids == [9, -1, 3, Int32.max])
        #expect(b == (try file.floats("b")))
        #expect(digest == (try CheckpointStore.digest(of: url)))
        #expect(seenHeader?.tensors == file.tensors)
        #expect(seenHeader?.metadata == ["k": "v"])
        #expect(seenHeader?.fileBytes == (try fileSize(url)))
        // a, skipped (4000 B = one chunk), ids, b (2 buffers of 4000 B: one chunk each).
        #expect(chunks == 5)
    }
}

@Test func streamRefusesWhatTheMappingReaderRefuses() throws {
    try withTempDirectory { dir in
        let url = dir.appendingPathComponent("t.safetensors")
        try SafeTensorsWriter.write(to: url, tensors: streamTensors())
        let size = try fileSize(url)
        try truncate(url, to: size - 10)
        #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsFile(url: url) }
        #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsStream.read(url: url, plan: { _ in [:] }) }

        let bad = dir.appendingPathComponent("bad.safetensors")
        try rawSafeTensors(header: #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}"#, data: Array(repeating: 0, count: 12))
            .write(to: bad)
        #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsStream.read(url: bad, plan: { _ in [:] }) }
    }
}

@Test func streamChecksDestinationSizesAndNames() throws {
    try withTempDirectory { dir in
        let url = dir.appendingPathComponent("t.safetensors")
        try SafeTensorsWriter.write(to: url, tensors: streamTensors())
        var small = [Float](repeating: 0, count: 14)
        small.withUnsafeMutableBytes { raw in
            #expect(throws: SafeTensorsError.self) {
                _ = try SafeTensorsStream.read(url: url, plan: { _ in ["a": .into([raw])] })
            }
            #expect(throws: SafeTensorsError.self) {
                _ = try SafeTensorsStream.read(url: url, plan: { _ in ["nope": .skip] })
            }
        }
    }
}

@Test func streamDigestChangesWhenASkippedTensorChanges() throws {
    try withTempDirectory { dir in
        let url = dir.appendingPathComponent("t.safetensors")
        try SafeTensorsWriter.write(to: url, tensors: streamTensors())
        let before = try SafeTensorsStream.read(url: url, plan: { _ in [:] })
        let file = try SafeTensorsFile(url: url)
        let skipped = try file.info("skipped")
        try flipByte(in: url, at: file.dataOffset + skipped.byteRange.lowerBound + 7)
        let after = try SafeTensorsStream.read(url: url, plan: { _ in [:] })
        #expect(before.bytes == after.bytes)
        #expect(before.sha256 != after.sha256)
        #expect(after == (try CheckpointStore.digest(of: url)))
    }
}

@Test func verifyLeavesOnlyTheDigestToTheCaller() throws {
    try withTempDirectory { dir in
        let store = CheckpointStore(directory: dir, keep: 5)
        let manifest = CheckpointManifest(modelKind: "test", step: 1, samplesTrained: 1, wallTimeSeconds: 0)
        let version = try store.write(step: 1, manifest: manifest, files: [.safetensors(tensors: streamTensors())])
        let model = version.appendingPathComponent(CheckpointStore.modelFileName)
        let skip: Set<String> = [CheckpointStore.modelFileName]
        #expect(CheckpointStore.verify(version).isEmpty)
        #expect(CheckpointStore.verify(version, digestCheckedByCaller: skip).isEmpty)

        // A flipped byte: only a full verify sees it; the caller's own hash must.
        try flipByte(in: model, at: try fileSize(model) - 3)
        #expect(CheckpointStore.verify(version).contains { $0.message.contains("sha256") })
        #expect(CheckpointStore.verify(version, digestCheckedByCaller: skip).isEmpty)

        // A wrong size is still reported either way.
        try truncate(model, to: try fileSize(model) - 4)
        #expect(CheckpointStore.verify(version, digestCheckedByCaller: skip).contains { $0.message.contains("size is") })
    }
}
