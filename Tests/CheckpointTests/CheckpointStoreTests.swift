// CheckpointStore: versioning and pruning, LATEST, verify, crash leftovers, resolve, and the
// manifest's JSON shape.

import Foundation
import Testing
@testable import Checkpoint

private func manifest(step: Int = 0, dictionary: String? = "features.stats") -> CheckpointManifest {
    CheckpointManifest(
        modelKind: "widedeep",
        modelConfig: ["embedding_dim": 16, "hidden": [64, 32], "dropout": 0.1, "name": "test", "bias": true, "x": nil],
        step: step,
        samplesTrained: step * 100,
        wallTimeSeconds: Double(step) * 0.5,
        metrics: ["logloss": 0.45, "auc": 0.78],
        streamPositions: ["criteo/0": "1200", "criteo/1": "1187"],
        dictionary: dictionary)
}

/// model.safetensors with a step-dependent weight, plus a feature-dictionary file.
private func files(step: Int) -> [CheckpointFile] {
    [
        .safetensors(metadata: ["step": String(step)], tensors: [
            SafeTensor(name: "w", shape: [2, 4], data: .float((0 ..< 8).map { Float($0 + step) })),
            SafeTensor(name: "ids", shape: [3], data: .int64([1, 2, Int64(step)])),
        ]),
        .data("features.stats", Data("dictionary for step \(step)\n".utf8)),
    ]
}

@discardableResult
private func write(_ store: CheckpointStore, step: Int) throws -> URL {
    try store.write(step: step, manifest: manifest(), files: files(step: step))
}

private func entries(_ dir: URL) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
}

@Test func keepsNewestVersionsAndMovesLatest() throws {
    try withTempDirectory { root in
        let store = CheckpointStore(directory: root, keep: 3)
        for step in [100, 200, 300, 400, 500] {
            let url = try write(store, step: step)
            #expect(url.lastPathComponent == CheckpointStore.directoryName(step: step))
            #expect(store.latest() == url)
        }
        let stepDirs = try entries(root).filter { $0.hasPrefix("step-") }
        #expect(stepDirs == ["step-000000000300", "step-000000000400", "step-000000000500"])
        #expect(try entries(root) == ["LATEST"] + stepDirs, "no temp directories or LATEST.tmp left")
        let latest = try String(contentsOf: root.appendingPathComponent("LATEST"), encoding: .utf8)
        #expect(latest == "step-000000000500\n")
        #expect(store.latest()?.lastPathComponent == "step-000000000500")

        let summaries = store.list()
        #expect(summaries.map(\.step) == [300, 400, 500])
        #expect(summaries.map(\.isLatest) == [false, false, true])
        #expect(summaries.allSatisfy { $0.manifest != nil && $0.problem == nil })
        #expect(summaries.last?.manifest?.step == 500, "write fills in the step")
    }
}

@Test func writtenCheckpointVerifiesAndLoads() throws {
    try withTempDirectory { root in
        let store = CheckpointStore(directory: root, keep: 2)
        let dir = try write(store, step: 7)
        #expect(CheckpointStore.verify(dir) == [])

        let loaded = try CheckpointStore.loadManifest(dir)
        var expected = manifest()
        expected.step = 7
        expected.files = loaded.files
        #expect(loaded == expected)
        #expect(Set(loaded.files.keys) == ["model.safetensors", "features.stats"])
        let stats = try CheckpointStore.digest(of: dir.appendingPathComponent("features.stats"))
        #expect(loaded.files["features.stats"] == stats)
        #expect(stats.bytes == "dictionary for step 7\n".utf8.count)
        #expect(stats.sha256.count == 64)

        let model = try SafeTensorsFile(url: dir.appendingPathComponent("model.safetensors"))
        #expect(try model.floats("w") == (7 ..< 15).map(Float.init))
        #expect(model.metadata["step"] == "7")
    }
}

@Test func verifyReportsCorruption() throws {
    try withTempDirectory { root in
        let store = CheckpointStore(directory: root, keep: 10)

        // One flipped byte in the tensor data.
        let flipped = try write(store, step: 1)
        let model = flipped.appendingPathComponent("model.safetensors")
        try flipByte(in: model, at: try fileSize(model) - 1)
        let flipProblems = CheckpointStore.verify(flipped)
        #expect(flipProblems.contains { $0.file == "model.safetensors" && $0.message.contains("sha256") },
                "\(flipProblems)")

        // Missing manifest.
        let noManifest = try write(store, step: 2)
        try FileManager.default.removeItem(at: noManifest.appendingPathComponent("manifest.json"))
        let manifestProblems = CheckpointStore.verify(noManifest)
        #expect(manifestProblems.count == 1 && manifestProblems.first?.file == "manifest.json", "\(manifestProblems)")

        // Truncated dictionary file: the size no longer matches.
        let truncatedStats = try write(store, step: 3)
        try truncate(truncatedStats.appendingPathComponent("features.stats"), to: 4)
        let statsProblems = CheckpointStore.verify(truncatedStats)
        #expect(statsProblems.contains { $0.file == "features.stats" && $0.message.contains("size") }, "\(statsProblems)")

        // Truncated model: size mismatch and the validating reader both object.
        let truncatedModel = try write(store, step: 4)
        let modelURL = truncatedModel.appendingPathComponent("model.safetensors")
        try truncate(modelURL, to: try fileSize(modelURL) - 5)
        let modelProblems = CheckpointStore.verify(truncatedModel)
        #expect(modelProblems.contains { $0.message.contains("size") }, "\(modelProblems)")
        #expect(modelProblems.contains { $0.message.contains("truncated") }, "\(modelProblems)")

        // A listed file deleted, and an unlisted file added.
        let edited = try write(store, step: 5)
        try FileManager.default.removeItem(at: edited.appendingPathComponent("features.stats"))
        try Data("x".utf8).write(to: edited.appendingPathComponent("stray.bin"))
        let editProblems = CheckpointStore.verify(edited)
        #expect(editProblems.contains { $0.file == "features.stats" && $0.message.contains("missing") }, "\(editProblems)")
        #expect(editProblems.contains { $0.file == "stray.bin" }, "\(editProblems)")

        // The untouched checkpoint next to them is still fine.
        #expect(CheckpointStore.verify(try write(store, step: 6)) == [])
    }
}

@Test func versionMismatchSaysWhatToDo() throws {
    try withTempDirectory { root in
        let dir = try write(CheckpointStore(directory: root, keep: 1), step: 1)
        let url = dir.appendingPathComponent("manifest.json")
        let text = try String(contentsOf: url, encoding: .utf8)
        #expect(text.contains("\"format_version\" : 1"))
        try text.replacingOccurrences(of: "\"format_version\" : 1", with: "\"format_version\" : 2")
            .write(to: url, atomically: true, encoding: .utf8)

        #expect(throws: CheckpointError.unsupportedVersion(path: url.path, found: 2, supported: 1)) {
            try CheckpointStore.loadManifest(dir)
        }
        let problems = CheckpointStore.verify(dir)
        #expect(problems.count == 1)
        let message = problems.first?.message ?? ""
        #expect(message.contains("version 2") && message.contains("newer streamrec"), "\(message)")

        try text.replacingOccurrences(of: "streamrec-checkpoint", with: "something-else")
            .write(to: url, atomically: true, encoding: .utf8)
        #expect(CheckpointStore.verify(dir).first?.message.contains("not a StreamRec checkpoint") == true)
    }
}

@Test func crashLeftoversAreIgnoredThenCleaned() throws {
    try withTempDirectory { root in
        let store = CheckpointStore(directory: root, keep: 3)
        try write(store, step: 1)
        let good = try write(store, step: 2)

        // A writer that died mid-checkpoint (pid 2147483647 cannot be alive: above pid_max).
        let leftover = root.appendingPathComponent(".tmp-step-000000000009-2147483647")
        try FileManager.default.createDirectory(at: leftover, withIntermediateDirectories: false)
        try Data([1, 2, 3]).write(to: leftover.appendingPathComponent("model.safetensors"))
        // And one that died between LATEST.tmp and its rename.
        try Data("step-000000000009\n".utf8).write(to: root.appendingPathComponent("LATEST.tmp"))

        #expect(store.latest() == good)
        #expect(store.list().map(\.step) == [1, 2])
        #expect(try store.resolve("latest") == good)

        let next = try write(store, step: 3)
        #expect(!FileManager.default.fileExists(atPath: leftover.path), "stale temp dir removed on next write")
        #expect(try entries(root) == ["LATEST", "step-000000000001", "step-000000000002", "step-000000000003"])
        #expect(store.latest() == next)
    }
}

@Test func latestFallsBackWhenLatestFileIsMissingOrStale() throws {
    try withTempDirectory { root in
        let store = CheckpointStore(directory: root, keep: 5)
        try write(store, step: 10)
        let newest = try write(store, step: 20)
        try FileManager.default.removeItem(at: root.appendingPathComponent("LATEST"))
        #expect(store.latest() == newest)

        // LATEST names a directory whose manifest is gone: fall back to the newest readable one.
        let broken = try write(store, step: 30)
        try FileManager.default.removeItem(at: broken.appendingPathComponent("manifest.json"))
        #expect(store.latest() == newest)
        #expect(store.list().first { $0.step == 30 }?.problem != nil)

        #expect(CheckpointStore(directory: root.appendingPathComponent("nothing-here"), keep: 1).latest() == nil)
    }
}

/// A version is immutable once written: a second write of the same step is refused and the
/// first one stays exactly as it was.
@Test func rewritingTheSameStepIsRefused() throws {
    try withTempDirectory { root in
        let store = CheckpointStore(directory: root, keep: 3)
        let first = try write(store, step: 5)
        let before = try Data(contentsOf: first.appendingPathComponent("manifest.json"))
        var second = manifest()
        second.metrics = ["auc": 0.99]
        #expect(throws: CheckpointError.versionExists(step: 5)) {
            try store.write(step: 5, manifest: second, files: [
                .safetensors(tensors: [.vector("w", [9, 9])]),
                .data("features.stats", Data("new".utf8)),
            ])
        }
        #expect(try Data(contentsOf: first.appendingPathComponent("manifest.json")) == before)
        #expect(CheckpointStore.verify(first) == [])
        #expect(store.hasVersion(step: 5) && !store.hasVersion(step: 6))
        #expect(try entries(root) == ["LATEST", "step-000000000005"])
    }
}

@Test func failedWriteLeavesPreviousCheckpointCurrent() throws {
    struct WriterFailed: Error {}
    try withTempDirectory { root in
        let store = CheckpointStore(directory: root, keep: 3)
        let good = try write(store, step: 1)
        #expect(throws: WriterFailed.self) {
            try store.write(step: 2, manifest: manifest(), files: files(step: 2) + [
                CheckpointFile(name: "extra.bin") { _ in throw WriterFailed() },
            ])
        }
        #expect(store.latest() == good)
        #expect(try entries(root) == ["LATEST", "step-000000000001"])

        // Requests that could never verify are refused before anything is written.
        #expect(throws: CheckpointError.self) {
            try store.write(step: 3, manifest: manifest(), files: [.data("features.stats", Data())])
        }
        #expect(throws: CheckpointError.self) {
            try store.write(step: 3, manifest: manifest(dictionary: "missing.stats"), files: files(step: 3))
        }
        #expect(throws: CheckpointError.self) {
            try store.write(step: 3, manifest: manifest(), files: files(step: 3) + [.data("../escape", Data())])
        }
        #expect(throws: CheckpointError.invalidStep(-1)) { try write(store, step: -1) }
        // A writer producing a broken safetensors file is caught before it becomes LATEST.
        #expect(throws: SafeTensorsError.self) {
            try store.write(step: 3, manifest: manifest(), files: [
                .data("model.safetensors", Data([1, 2, 3])), .data("features.stats", Data()),
            ])
        }
        #expect(store.latest() == good)
    }
}

@Test func resolveAcceptsStepRootDirectoryAndLatest() throws {
    try withTempDirectory { root in
        let store = CheckpointStore(directory: root, keep: 5)
        let first = try write(store, step: 1000)
        let second = try write(store, step: 2000)

        #expect(try store.resolve("1000") == first)
        #expect(try store.resolve("2000") == second)
        #expect(try store.resolve(root.path) == second, "a root resolves to its LATEST")
        #expect(try store.resolve(first.path) == first)
        #expect(try store.resolve("latest") == second)
        #expect(try store.resolve("step-000000001000") == first)

        // A different root than the store's own works too.
        let other = CheckpointStore(directory: root.appendingPathComponent("other"), keep: 1)
        let otherLatest = try write(other, step: 3)
        #expect(try store.resolve(other.directory.path) == otherLatest)

        #expect(throws: CheckpointError.self) { try store.resolve("1500") }
        #expect(throws: CheckpointError.self) { try store.resolve(root.appendingPathComponent("nope").path) }
        do {
            _ = try store.resolve("1500")
        } catch {
            #expect(String(describing: error).contains("1000, 2000"), "lists what exists: \(error)")
        }
    }
}

@Test func manifestJSONUsesSnakeCaseSortedPrettyKeys() throws {
    try withTempDirectory { root in
        let dir = try write(CheckpointStore(directory: root, keep: 1), step: 42)
        let data = try Data(contentsOf: dir.appendingPathComponent("manifest.json"))
        let json = try JSONDecoder().decode(JSONValue.self, from: data)
        guard case .object(let top) = json else {
            Issue.record("manifest is not a JSON object")
            return
        }
        #expect(Set(top.keys) == [
            "format", "format_version", "model_kind", "model_config", "step", "samples_trained",
            "wall_time_seconds", "created_at", "metrics", "stream_positions", "dictionary", "files",
        ])
        #expect(top["format"] == "streamrec-checkpoint")
        #expect(top["format_version"] == 1)
        #expect(top["model_kind"] == "widedeep")
        #expect(top["step"] == 42)
        #expect(top["dictionary"] == "features.stats")
        #expect(top["files"]?["model.safetensors"]?["sha256"]?.stringValue?.count == 64)
        #expect(top["model_config"]?["hidden"] == [64, 32])
        #expect(top["model_config"]?["x"] == .null)

        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\n  \"created_at\""), "pretty-printed")
        #expect(text.contains("\"embedding_dim\" : 16,"), "integers written without a fraction")
        let topKeys = text.split(separator: "\n").filter { $0.hasPrefix("  \"") }
            .map { $0.dropFirst(3).prefix { $0 != "\"" } }.map(String.init)
        #expect(topKeys == topKeys.sorted() && topKeys.count == 12, "\(topKeys)")

        let created = try CheckpointStore.loadManifest(dir).createdAt
        #expect(ISO8601DateFormatter().date(from: created) != nil, "created_at is ISO 8601: \(created)")
    }
}

@Test func jsonValueRoundTrips() throws {
    let value: JSONValue = ["a": [1, 2.5, "s", true, nil], "b": ["nested": -3], "c": 1e300]
    let data = try JSONEncoder().encode(value)
    #expect(try JSONDecoder().decode(JSONValue.self, from: data) == value)
    #expect(JSONValue.number(3).exactInt == 3)
    #expect(JSONValue.number(3.5).exactInt == nil)
    #expect(JSONValue.bool(true).exactInt == nil)
}

@Test func versionsOutsideTheRootAreRefused() throws {
    try withTempDirectory { base in
        let root = base.appendingPathComponent("checkpoints"), elsewhere = base.appendingPathComponent("elsewhere")
        let store = CheckpointStore(directory: root, keep: 5)
        let good = try write(store, step: 1)
        let outside = try write(CheckpointStore(directory: elsewhere, keep: 5), step: 7)
        #expect(CheckpointStore.verify(outside).isEmpty)
        let link = root.appendingPathComponent("step-000000000007")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: outside)
        let latestFile = root.appendingPathComponent("LATEST")

        // A step-* symlink leading outside the root: never the latest, not resolvable, listed with why.
        try FileManager.default.removeItem(at: latestFile)
        #expect(store.latest() == good)
        #expect(throws: CheckpointError.outsideRoot(name: link.lastPathComponent, target: outside.resolvingSymlinksInPath().path,
                                                    root: store.directory.path)) { try store.resolve("7") }
        #expect(throws: CheckpointError.self) { try store.resolve("step-000000000007") }
        #expect(store.list().first { $0.step == 7 }?.problem?.contains("outside the checkpoints root") == true)
        try Data("step-000000000007\n".utf8).write(to: latestFile)
        #expect(throws: CheckpointError.self) { try store.latestVersion() }
        #expect(store.latest() == good)

        // A symlink that stays inside the root is fine.
        try FileManager.default.removeItem(at: link)
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: good)
        #expect(try store.latestVersion()?.path == link.path)
        try FileManager.default.removeItem(at: link)

        // LATEST holding a path, `..`, an absolute path or garbage names no version.
        for text in ["../elsewhere/step-000000000007", outside.path, "..", "step-000000000001/../../x", "garbage \u{1}\u{2}", ""] {
            try Data(text.utf8).write(to: latestFile)
            #expect(throws: CheckpointError.self, "LATEST = \(text)") { try store.latestVersion() }
            #expect(store.latest() == good)
        }
        // Not a regular file (a FIFO would block the reader).
        try FileManager.default.removeItem(at: latestFile)
        try FileManager.default.createSymbolicLink(at: latestFile, withDestinationURL: elsewhere.appendingPathComponent("LATEST"))
        #expect(throws: CheckpointError.self) { try store.latestVersion() }
    }
}

@Test func verifyRefusesFilesThatAreNotRegular() throws {
    try withTempDirectory { root in
        let dir = try write(CheckpointStore(directory: root, keep: 5), step: 1)
        // Same bytes, same sha256, but reached through a symlink to a file outside the checkpoint.
        let stats = dir.appendingPathComponent("features.stats"), copy = root.appendingPathComponent("stats-copy")
        try FileManager.default.copyItem(at: stats, to: copy)
        try FileManager.default.removeItem(at: stats)
        try FileManager.default.createSymbolicLink(at: stats, withDestinationURL: copy)
        let problems = CheckpointStore.verify(dir)
        #expect(problems.contains { $0.file == "features.stats" && $0.message.contains("not a regular file") }, "\(problems)")
    }
}
