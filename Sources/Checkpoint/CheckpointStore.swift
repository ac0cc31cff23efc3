// CheckpointStore: a directory of versioned checkpoints, written crash-safely.
//
//   <directory>/
//     step-000000001000/          one checkpoint: model.safetensors, manifest.json, other files
//     step-000000002000/
//     LATEST                      "step-000000002000\n"
//     .tmp-step-000000003000-<pid>/   a write in progress (or left by a crash; ignored, cleaned)
//
// Commit protocol (`write`): every file goes into a hidden temp directory and is fsynced, its
// size and sha256 go into manifest.json, which is written last; the directory is fsynced and
// renamed to `step-<12-digit step>`; then LATEST is replaced by writing LATEST.tmp, fsyncing and
// renaming it over. A crash at any point leaves either the previous checkpoint or the new one
// as LATEST, never a half-written one. Old versions beyond `keep` are pruned afterwards.
//
// Threading: a store value is just a path; only one process (and one task) may write into a
// directory at a time. Reading (`latest`, `list`, `verify`) is safe alongside a writer.

import Crypto
import FileAccess
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Types

/// One file to put into a checkpoint: its name inside the checkpoint directory, and a closure
/// that writes it at the path it is given (so models can stream their tensors straight to disk).
public struct CheckpointFile {
    public var name: String
    public var write: (URL) throws -> Void

    public init(name: String, write: @escaping (URL) throws -> Void) {
        self.name = name
        self.write = write
    }

    /// A file with fixed contents.
    public static func data(_ name: String, _ contents: Data) -> CheckpointFile {
        CheckpointFile(name: name) { url in
            try fileIO {
                let file = try DataFile(url.path, .create)
                try contents.withUnsafeBytes { try file.write($0) }
                try file.close()
            }
        }
    }

    /// A safetensors file streamed by `SafeTensorsWriter`.
    public static func safetensors(
        _ name: String = CheckpointStore.modelFileName, metadata: [String: String] = [:], tensors: [SafeTensor]
    ) -> CheckpointFile {
        CheckpointFile(name: name) { url in
            try SafeTensorsWriter.write(to: url, metadata: metadata, tensors: tensors)
        }
    }
}

/// One entry of `CheckpointStore.list()`.
public struct CheckpointSummary: Sendable {
    public let step: Int
    public let url: URL
    /// nil when the manifest is missing or unreadable; `problem` says why.
    public let manifest: CheckpointManifest?
    public let problem: String?
    /// LATEST points here.
    public let isLatest: Bool
}

/// One thing wrong with a checkpoint directory, from `CheckpointStore.verify`.
public struct CheckpointProblem: Sendable, Equatable, CustomStringConvertible {
    /// The file concerned, if any.
    public let file: String?
    public let message: String

    public init(file: String?, message: String) {
        self.file = file
        self.message = message
    }

    public var description: String { file.map { "\($0): \(message)" } ?? message }
}

public enum CheckpointError: Error, Equatable, CustomStringConvertible {
    case io(path: String, message: String)
    case invalidManifest(path: String, reason: String)
    case unsupportedVersion(path: String, found: Int, supported: Int)
    case invalidStep(Int)
    case invalidFile(name: String, reason: String)
    case notFound(spec: String, reason: String)
    case versionExists(step: Int)
    /// LATEST (or a name given as a version) is not a `step-<12 digits>` version name, or LATEST
    /// is not a small regular file.
    case invalidLatest(root: String, reason: String)
    /// A version entry resolves (through a symlink) to a place outside the checkpoints root.
    case outsideRoot(name: String, target: String, root: String)

    public var description: String {
        switch self {
        case let .io(path, message):
            "\(path): \(message)"
        case let .invalidManifest(path, reason):
            "\(path): invalid checkpoint manifest: \(reason)"
        case let .unsupportedVersion(path, found, supported):
            "\(path): checkpoint format version \(found), but this build of streamrec reads version "
                + "\(supported). "
                + (found > supported
                    ? "It was written by a newer streamrec: load it with that version or upgrade."
                    : "It was written by an older streamrec: load it with that version and save "
                        + "again, or retrain from scratch.")
        case let .invalidStep(step):
            "step \(step) is out of range: checkpoint steps must be in 0...999999999999"
        case let .invalidFile(name, reason):
            "checkpoint file '\(name)': \(reason)"
        case let .notFound(spec, reason):
            "no checkpoint for '\(spec)': \(reason)"
        case let .versionExists(step):
            "a checkpoint for step \(step) already exists and versions are never rewritten; "
                + "write a new lineage into an empty --checkpoint-dir (or resume the existing one)"
        case let .invalidLatest(root, reason):
            "\(root)/LATEST: \(reason)"
        case let .outsideRoot(name, target, root):
            "\(root)/\(name) resolves to \(target), outside the checkpoints root: refused"
        }
    }
}

// MARK: - Store

public struct CheckpointStore: Sendable {
    public static let latestFileName = "LATEST"
    public static let modelFileName = "model.safetensors"
    public static let maxStep = 999_999_999_999

    public let directory: URL
    /// Number of checkpoints kept after each write (at least 1; the one LATEST names is always kept).
    public let keep: Int

    public init(directory: URL, keep: Int) {
        self.directory = directory.standardizedFileURL
        self.keep = max(1, keep)
    }

    /// "step-000000001000".
    public static func directoryName(step: Int) -> String {
        let digits = String(step)
        return "step-" + String(repeating: "0", count: max(0, 12 - digits.count)) + digits
    }

    /// The step of a "step-<12 digits>" name, nil for anything else.
    public static func step(fromDirectoryName name: String) -> Int? {
        guard name.hasPrefix("step-") else { return nil }
        let digits = name.dropFirst(5)
        guard digits.count == 12, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(digits)
    }

    /// Whether a version for `step` exists (complete or not: its name is taken either way).
    public func hasVersion(step: Int) -> Bool {
        // lstat: a dangling `step-*` symlink takes the name too.
        (try? FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent(Self.directoryName(step: step)).path)) != nil
    }

    // MARK: Writing

    /// Writes a checkpoint for `step` and makes it LATEST; returns its directory.
    ///
    /// `manifest.files` and `manifest.step` are filled in here. `files` must include
    /// `model.safetensors`, and the file `manifest.dictionary` names if set. A version that
    /// already exists for `step` is never replaced (`CheckpointError.versionExists`). Afterwards old checkpoints beyond `keep` and
    /// stale temp directories from crashed writers are deleted.
    @discardableResult
    public func write(step: Int, manifest: CheckpointManifest, files: [CheckpointFile]) throws -> URL {
        guard (0 ... Self.maxStep).contains(step) else { throw CheckpointError.invalidStep(step) }
        try Self.validate(files: files, manifest: manifest)

        let fm = FileManager.default
        try io(directory.path) { try fm.createDirectory(at: directory, withIntermediateDirectories: true) }
        let name = Self.directoryName(step: step)
        // A version is immutable once written: servers and resumes may already hold it.
        if hasVersion(step: step) { throw CheckpointError.versionExists(step: step) }
        let pid = getpid()
        let temp = directory.appendingPathComponent(".tmp-\(name)-\(pid)", isDirectory: true)
        let target = directory.appendingPathComponent(name, isDirectory: true)
        if fm.fileExists(atPath: temp.path) {
            try io(temp.path) { try fm.removeItem(at: temp) }
        }
        try io(temp.path) { try fm.createDirectory(at: temp, withIntermediateDirectories: false) }

        do {
            var digests: [String: FileDigest] = [:]
            for file in files {
                let url = temp.appendingPathComponent(file.name)
                try file.write(url)
                var isDirectory: ObjCBool = false
                guard fm.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue else {
                    throw CheckpointError.invalidFile(name: file.name, reason: "its writer did not create a regular file")
                }
                if file.name.hasSuffix(".safetensors") {
                    // Catch a broken writer before it can become LATEST.
                    _ = try SafeTensorsFile(url: url)
                }
                try posix { try fileIO { try DataFile.sync(path: url.path) } }
                digests[file.name] = try Self.digest(of: url)
            }
            var manifest = manifest
            manifest.format = CheckpointManifest.formatMagic
            manifest.formatVersion = CheckpointManifest.currentFormatVersion
            manifest.step = step
            manifest.files = digests
            try Self.writeDurably(manifest.encoded(), to: temp.appendingPathComponent(CheckpointManifest.fileName))
            try posix { try fileIO { try DataFile.sync(path: temp.path) } }

            // rename(2) would replace an empty directory of that name made meanwhile; check again.
            if fm.fileExists(atPath: target.path) { throw CheckpointError.versionExists(step: step) }
            try Self.rename(temp, to: target)
            try posix { try fileIO { try DataFile.sync(path: directory.path) } }
        } catch {
            try? fm.removeItem(at: temp)
            throw error
        }

        try setLatest(name)
        prune()
        return target
    }

    /// Points LATEST at `name` atomically: LATEST.tmp, fsync, rename, fsync the directory.
    private func setLatest(_ name: String) throws {
        let temp = directory.appendingPathComponent(Self.latestFileName + ".tmp")
        try Self.writeDurably(Data((name + "\n").utf8), to: temp)
        try Self.rename(temp, to: directory.appendingPathComponent(Self.latestFileName))
        try posix { try fileIO { try DataFile.sync(path: directory.path) } }
    }

    /// Deletes checkpoints beyond `keep` (never the one LATEST names) and temp directories whose
    /// writer is gone. Failures are ignored: the checkpoint just written is already committed.
    private func prune() {
        let fm = FileManager.default
        let latestName = readLatestName()
        let steps = stepDirectories()
        for (_, url) in steps.dropLast(keep) where url.lastPathComponent != latestName {
            try? fm.removeItem(at: url)
        }
        let entries = (try? fm.contentsOfDirectory(atPath: directory.path)) ?? []
        for entry in entries where entry.hasPrefix(".tmp-") && !Self.writerIsAlive(tempName: entry) {
            try? fm.removeItem(at: directory.appendingPathComponent(entry))
        }
    }

    /// True if the temp directory's name ends in the pid of another live process.
    private static func writerIsAlive(tempName: String) -> Bool {
        guard let pidText = tempName.split(separator: "-").last, let pid = Int32(pidText) else { return false }
        if pid == getpid() { return false } // ours, and our write has finished
        return kill(pid, 0) == 0 || errno == EPERM
    }

    private static func validate(files: [CheckpointFile], manifest: CheckpointManifest) throws {
        var names = Set<String>()
        for file in files {
            let name = file.name
            if name.isEmpty || name.hasPrefix(".") || name.contains("/") || name == CheckpointManifest.fileName {
                throw CheckpointError.invalidFile(
                    name: name, reason: "names must be plain, not hidden, and not \(CheckpointManifest.fileName)")
            }
            guard names.insert(name).inserted else {
                throw CheckpointError.invalidFile(name: name, reason: "listed twice")
            }
        }
        guard names.contains(modelFileName) else {
            throw CheckpointError.invalidFile(name: modelFileName, reason: "every checkpoint needs one")
        }
        if let dictionary = manifest.dictionary, !names.contains(dictionary) {
            throw CheckpointError.invalidFile(
                name: dictionary, reason: "the manifest's dictionary names it but no such file is written")
        }
    }

    // MARK: Finding checkpoints

    /// The checkpoint LATEST names; if LATEST is missing or names something unusable, the newest
    /// step directory with a readable manifest. nil if there is none.
    /// Versions that resolve outside the root (symlinks) are never returned.
    public func latest() -> URL? {
        if let url = try? latestVersion(), (try? Self.loadManifest(url)) != nil { return url }
        for (_, url) in stepDirectories().reversed()
        where (try? version(named: url.lastPathComponent)) != nil && (try? Self.loadManifest(url)) != nil {
            return url
        }
        return nil
    }

    /// The version LATEST names, nil when there is no LATEST. Throws when LATEST is not a small
    /// regular file holding a `step-<12 digits>` name, or names an entry that resolves outside
    /// the root (see `version(named:)`). The directory itself may be missing or broken: that is
    /// for verification to say.
    public func latestVersion() throws -> URL? {
        guard let name = try readLatest() else { return nil }
        return try version(named: name)
    }

    /// The directory of version `name` in this store. Refuses anything but a `step-<12 digits>`
    /// name (so no path, `..` or absolute path can lead elsewhere) and an entry whose real path
    /// (symlinks followed) is outside the root's real path. A missing entry is returned as is.
    public func version(named name: String) throws -> URL {
        guard Self.step(fromDirectoryName: name) != nil else {
            let shown = name.count > 80 ? String(name.prefix(80)) + "…" : name
            throw CheckpointError.invalidLatest(
                root: directory.path, reason: "names \(String(reflecting: shown)), not a step-<12 digits> version in this directory")
        }
        let url = directory.appendingPathComponent(name, isDirectory: true)
        guard let target = Self.realPath(url.path) else { return url }
        let root = Self.realPath(directory.path) ?? directory.path
        guard target.hasPrefix(root.hasSuffix("/") ? root : root + "/") else {
            throw CheckpointError.outsideRoot(name: name, target: target, root: directory.path)
        }
        return url
    }

    /// LATEST's text, trimmed; nil when there is no LATEST. Only a small regular file is read
    /// (a FIFO would block the reader; a large file is not a version name).
    public func readLatest() throws -> String? {
        let url = directory.appendingPathComponent(Self.latestFileName)
        // attributesOfItem does not follow symlinks (lstat).
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path) else { return nil }
        guard attributes[.type] as? FileAttributeType == .typeRegular else {
            throw CheckpointError.invalidLatest(root: directory.path, reason: "is not a regular file")
        }
        guard let size = attributes[.size] as? Int, size <= 4096 else {
            throw CheckpointError.invalidLatest(root: directory.path, reason: "is larger than 4096 bytes: not a version name")
        }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw CheckpointError.io(path: url.path, message: "cannot read: \(error.localizedDescription)")
        }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The canonical path (symlinks and `..` resolved), nil if it does not exist.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Every `step-*` directory, oldest first, with its manifest or the reason it has none.
    /// Temp directories are not listed.
    public func list() -> [CheckpointSummary] {
        let latestName = readLatestName()
        return stepDirectories().map { step, url in
            do {
                _ = try version(named: url.lastPathComponent)
                let manifest = try Self.loadManifest(url)
                return CheckpointSummary(step: step, url: url, manifest: manifest, problem: nil,
                                         isLatest: url.lastPathComponent == latestName)
            } catch {
                return CheckpointSummary(step: step, url: url, manifest: nil, problem: String(describing: error),
                                         isLatest: url.lastPathComponent == latestName)
            }
        }
    }

    /// Finds a checkpoint directory from what a user typed: "latest", a step number (in this
    /// store), a checkpoint directory, a checkpoints root (→ its latest), or a step directory
    /// name inside this store.
    public func resolve(_ spec: String) throws -> URL {
        let spec = spec.trimmingCharacters(in: .whitespaces)
        let fm = FileManager.default
        func hasManifest(_ url: URL) -> Bool {
            fm.fileExists(atPath: url.appendingPathComponent(CheckpointManifest.fileName).path)
        }
        func available() -> String {
            let steps = stepDirectories().map { String($0.step) }
            return steps.isEmpty ? "\(directory.path) holds no checkpoints"
                : "available steps in \(directory.path): " + steps.joined(separator: ", ")
        }

        if spec.isEmpty || spec.lowercased() == "latest" {
            guard let url = latest() else { throw CheckpointError.notFound(spec: spec, reason: available()) }
            return url
        }
        if let step = Int(spec) {
            guard (0 ... Self.maxStep).contains(step) else { throw CheckpointError.invalidStep(step) }
            let url = try version(named: Self.directoryName(step: step))
            guard hasManifest(url) else { throw CheckpointError.notFound(spec: spec, reason: available()) }
            return url
        }
        var isDirectory: ObjCBool = false
        let url = URL(fileURLWithPath: spec, isDirectory: true).standardizedFileURL
        if fm.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue {
            if hasManifest(url) { return url }
            let root = CheckpointStore(directory: url, keep: keep)
            guard let latest = root.latest() else {
                throw CheckpointError.notFound(
                    spec: spec, reason: "\(url.path) has no manifest.json and no checkpoints under it")
            }
            return latest
        }
        if Self.step(fromDirectoryName: spec) != nil {
            let inside = try version(named: spec)
            if hasManifest(inside) { return inside }
        }
        throw CheckpointError.notFound(spec: spec, reason: "not a step number or a directory; " + available())
    }

    private func readLatestName() -> String? {
        let url = directory.appendingPathComponent(Self.latestFileName)
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return nil }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// (step, url) of every `step-<12 digits>` directory, ascending by step.
    private func stepDirectories() -> [(step: Int, url: URL)] {
        let fm = FileManager.default
        let entries = (try? fm.contentsOfDirectory(atPath: directory.path)) ?? []
        return entries.compactMap { name -> (step: Int, url: URL)? in
            guard let step = Self.step(fromDirectoryName: name) else { return nil }
            let url = directory.appendingPathComponent(name, isDirectory: true)
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue else { return nil }
            return (step, url)
        }.sorted { $0.step < $1.step }
    }

    // MARK: Checking

    public static func loadManifest(_ dir: URL) throws -> CheckpointManifest {
        let url = dir.appendingPathComponent(CheckpointManifest.fileName)
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw CheckpointError.io(
                path: url.path, message: "cannot read the manifest (\(error.localizedDescription)); "
                    + "the checkpoint is incomplete or this is not a checkpoint directory")
        }
        return try CheckpointManifest.decode(data, path: url.path)
    }

    /// The manifest of a checkpoint directory about to be loaded as a `kind` model: verified
    /// first (checksums, structure; unless `verify` is false) and refused — with every problem in
    /// the error — when it does not verify or holds another model kind.
    public static func loadManifest(_ dir: URL, expecting kind: String, verify: Bool) throws -> CheckpointManifest {
        if verify {
            let problems = Self.verify(dir)
            if !problems.isEmpty {
                throw CheckpointLoadError("checkpoint \(dir.path) failed verification: " + problems.map(\.description).joined(separator: "; "))
            }
        }
        let manifest = try loadManifest(dir)
        guard manifest.modelKind == kind else {
            throw CheckpointLoadError("checkpoint \(dir.path) holds a '\(manifest.modelKind)' model, expected '\(kind)'")
        }
        return manifest
    }

    /// Everything wrong with the checkpoint at `dir`; empty means it is intact: the manifest
    /// parses and has a known format and version, every listed file has the listed size and
    /// sha256, model.safetensors (and the dictionary, if named) are listed, no unlisted files
    /// are present, and model.safetensors passes the validating reader. Reads every file.
    ///
    /// `digestCheckedByCaller`: files whose size is checked here but whose sha256 (and, for
    /// model.safetensors, structure) the caller checks itself while reading them once
    /// (`SafeTensorsStream.read` returns the digest to compare with `manifest.files`). A caller
    /// that passes a name and does not check it loads an unverified file.
    public static func verify(_ dir: URL, digestCheckedByCaller: Set<String> = []) -> [CheckpointProblem] {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: dir.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            return [CheckpointProblem(file: nil, message: "\(dir.path) is not a directory")]
        }
        let manifest: CheckpointManifest
        do {
            manifest = try loadManifest(dir)
        } catch {
            return [CheckpointProblem(file: CheckpointManifest.fileName, message: String(describing: error))]
        }

        var problems: [CheckpointProblem] = []
        if let step = step(fromDirectoryName: dir.lastPathComponent), step != manifest.step {
            problems.append(CheckpointProblem(
                file: CheckpointManifest.fileName,
                message: "manifest says step \(manifest.step) but the directory is \(dir.lastPathComponent)"))
        }
        var required = [modelFileName]
        if let dictionary = manifest.dictionary { required.append(dictionary) }
        for name in required where manifest.files[name] == nil {
            problems.append(CheckpointProblem(file: name, message: "required file is not listed in the manifest"))
        }

        for (name, expected) in manifest.files.sorted(by: { $0.key < $1.key }) {
            guard !name.isEmpty, !name.contains("/"), name != "..", name != "." else {
                problems.append(CheckpointProblem(file: name, message: "manifest lists an invalid file name"))
                continue
            }
            let url = dir.appendingPathComponent(name)
            guard fm.fileExists(atPath: url.path) else {
                problems.append(CheckpointProblem(file: name, message: "listed in the manifest but missing"))
                continue
            }
            // A checkpoint holds its own files: a symlink could lead anywhere, a FIFO or device
            // would block or never end the read (attributesOfItem does not follow symlinks).
            guard (try? fm.attributesOfItem(atPath: url.path)[.type] as? FileAttributeType) == .typeRegular else {
                problems.append(CheckpointProblem(file: name, message: "is not a regular file (symlinks, FIFOs and devices are refused)"))
                continue
            }
            if digestCheckedByCaller.contains(name) {
                let size = (try? fm.attributesOfItem(atPath: url.path)[.size] as? Int) ?? -1
                if size != expected.bytes {
                    problems.append(CheckpointProblem(
                        file: name, message: "size is \(size) bytes, manifest says \(expected.bytes)"))
                }
                continue
            }
            do {
                let actual = try digest(of: url)
                if actual.bytes != expected.bytes {
                    problems.append(CheckpointProblem(
                        file: name, message: "size is \(actual.bytes) bytes, manifest says \(expected.bytes)"))
                } else if actual.sha256 != expected.sha256.lowercased() {
                    problems.append(CheckpointProblem(
                        file: name, message: "sha256 is \(actual.sha256), manifest says \(expected.sha256): "
                            + "the file is corrupted"))
                }
            } catch {
                problems.append(CheckpointProblem(file: name, message: String(describing: error)))
            }
        }

        let present = (try? fm.contentsOfDirectory(atPath: dir.path)) ?? []
        for name in present.sorted() where name != CheckpointManifest.fileName && manifest.files[name] == nil {
            problems.append(CheckpointProblem(file: name, message: "present but not listed in the manifest"))
        }

        let model = dir.appendingPathComponent(modelFileName)
        if !digestCheckedByCaller.contains(modelFileName), fm.fileExists(atPath: model.path) {
            do {
                _ = try SafeTensorsFile(url: model)
            } catch {
                problems.append(CheckpointProblem(file: modelFileName, message: String(describing: error)))
            }
        }
        return problems
    }

    /// Size and sha256 of a file, read in 1 MiB chunks.
    public static func digest(of url: URL) throws -> FileDigest {
        let handle: FileHandle
        do {
            handle = try FileHandle(forReadingFrom: url)
        } catch {
            throw CheckpointError.io(path: url.path, message: "cannot open: \(error.localizedDescription)")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        var total = 0
        do {
            while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                hasher.update(data: chunk)
                total += chunk.count
            }
        } catch {
            throw CheckpointError.io(path: url.path, message: "read failed: \(error.localizedDescription)")
        }
        return FileDigest(sha256: hex(hasher.finalize()), bytes: total)
    }

    /// Lower-case hex of a digest, as manifests store it.
    static func hex(_ digest: SHA256.Digest) -> String {
        let hexDigits = Array("0123456789abcdef".utf8)
        var hex = [UInt8]()
        for byte in digest {
            hex.append(hexDigits[Int(byte >> 4)])
            hex.append(hexDigits[Int(byte & 0x0f)])
        }
        return String(decoding: hex, as: UTF8.self)
    }

    // MARK: POSIX helpers (errors become CheckpointError.io)

    private static func writeDurably(_ data: Data, to url: URL) throws {
        try posix {
            try fileIO {
                let file = try DataFile(url.path, .create)
                try data.withUnsafeBytes { try file.write($0) }
                try file.sync()
                try file.close()
            }
        }
    }

    private static func rename(_ from: URL, to: URL) throws {
        guard systemRename(from.path, to.path) == 0 else {
            let code = errno
            throw CheckpointError.io(
                path: from.path,
                message: "rename to \(to.path) failed: \(String(cString: strerror(code))) (errno \(code))")
        }
    }
}

/// Runs `body`, turning the POSIX funnel's `SafeTensorsError.io` into `CheckpointError.io`.
private func posix<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch SafeTensorsError.io(let path, let message) {
        throw CheckpointError.io(path: path, message: message)
    }
}

/// Runs a Foundation file operation, turning its error into `CheckpointError.io` for `path`.
private func io<T>(_ path: String, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch {
        throw CheckpointError.io(path: path, message: error.localizedDescription)
    }
}

#if canImport(Glibc)
private func systemRename(_ from: String, _ to: String) -> Int32 { Glibc.rename(from, to) }
#elseif canImport(Darwin)
private func systemRename(_ from: String, _ to: String) -> Int32 { Darwin.rename(from, to) }
#endif
