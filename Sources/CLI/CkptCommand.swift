import Models
import ArgumentParser
import Foundation
import Checkpoint
import Training

struct Ckpt: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect checkpoints: list versions, show one, diff two, verify integrity.",
        discussion: """
        A checkpoint is a directory step-<12 digits>/ with model.safetensors (loadable by \
        Python's safetensors or numpy), features.stats (the dictionaries it was trained with) and \
        manifest.json (step, samples trained, metrics, stream positions, sha256 of every file). \
        LATEST in the checkpoints root names the newest complete version. PATH arguments accept a \
        checkpoint directory, a checkpoints root (meaning its LATEST) or ROOT/STEP.
        """,
        subcommands: [CkptList.self, CkptShow.self, CkptDiff.self, CkptVerify.self])
}

/// Resolves what a user typed to a checkpoint directory.
func resolveCheckpoint(_ spec: String) throws -> URL {
    let url = URL(fileURLWithPath: spec)
    if FileManager.default.fileExists(atPath: spec) {
        return try CheckpointStore(directory: url, keep: Int.max).resolve(spec)
    }
    // ROOT/STEP
    let parent = url.deletingLastPathComponent()
    if FileManager.default.fileExists(atPath: parent.path) {
        return try CheckpointStore(directory: parent, keep: Int.max).resolve(url.lastPathComponent)
    }
    throw CLIError("no checkpoint at \(spec)")
}

func printJSON<T: Encodable>(_ value: T) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try enc.encode(value), as: UTF8.self))
}

struct CkptList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Versions in a checkpoints root: step, time, samples, metrics.")
    @Argument(help: "Checkpoints root directory.") var dir: String
    @Flag(help: "JSON output.") var json = false

    struct Row: Codable {
        var step: Int; var path: String; var latest: Bool; var createdAt: String?; var samplesTrained: Int?
        var metrics: [String: Double]?; var problem: String?
        enum CodingKeys: String, CodingKey {
            case step, path, latest, metrics, problem
            case createdAt = "created_at", samplesTrained = "samples_trained"
        }
    }

    func run() throws {
        guard FileManager.default.fileExists(atPath: dir) else { throw CLIError("no such directory: \(dir)") }
        let rows = CheckpointStore(directory: URL(fileURLWithPath: dir), keep: Int.max).list().map {
            Row(step: $0.step, path: $0.url.path, latest: $0.isLatest, createdAt: $0.manifest?.createdAt,
                samplesTrained: $0.manifest?.samplesTrained, metrics: $0.manifest?.metrics, problem: $0.problem)
        }
        if json { return try printJSON(rows) }
        print(row(["", "STEP", "CREATED", "SAMPLES", "METRICS"], widths: [1, -12, -21, -10, 0]))
        for r in rows {
            let metrics = (r.metrics ?? [:]).sorted { $0.key < $1.key }.map { String(format: "%@=%.4f", $0.key, $0.value) }.joined(separator: " ")
            print(row([r.latest ? "*" : " ", String(r.step), r.createdAt ?? "?", r.samplesTrained.map(String.init) ?? "?",
                       r.problem.map { "PROBLEM: " + $0 } ?? metrics], widths: [1, -12, -21, -10, 0]))
        }
    }
}

struct CkptShow: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Manifest and every tensor: dtype, shape, min/max/mean/L2, embedding rows.")
    @Argument(help: "Checkpoint directory, checkpoints root, or ROOT/STEP.") var path: String
    @Flag(help: "JSON output.") var json = false

    struct Shown: Codable {
        var path: String; var manifest: CheckpointManifest; var tensors: [TensorSummary]; var embeddingRows: Int?
        enum CodingKeys: String, CodingKey { case path, manifest, tensors, embeddingRows = "embedding_rows" }
    }

    func run() throws {
        let dir = try resolveCheckpoint(path)
        let manifest = try CheckpointStore.loadManifest(dir)
        let file = try SafeTensorsFile(url: dir.appendingPathComponent(CheckpointStore.modelFileName))
        let tensors = try summarizeTensors(file)
        let rows = file.contains("sparse.ids") ? try file.info("sparse.ids").shape.first : nil
        if json { return try printJSON(Shown(path: dir.path, manifest: manifest, tensors: tensors, embeddingRows: rows)) }
        print("checkpoint  \(dir.path)")
        print("model       \(manifest.modelKind)   format \(manifest.format) v\(manifest.formatVersion)")
        print("step        \(manifest.step)   samples trained \(manifest.samplesTrained)   wall time \(String(format: "%.1f", manifest.wallTimeSeconds))s   created \(manifest.createdAt)")
        if let rows { print("embedding rows  \(rows)") }
        print("metrics     " + manifest.metrics.sorted { $0.key < $1.key }.map { String(format: "%@=%.5f", $0.key, $0.value) }.joined(separator: "  "))
        if !manifest.streamPositions.isEmpty {
            print("positions   " + manifest.streamPositions.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "  "))
        }
        print("files       " + manifest.files.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value.bytes) B, sha256 \($0.value.sha256.prefix(12))…)" }.joined(separator: ", "))
        print("")
        print(row(["TENSOR", "TYPE", "SHAPE", "MIN", "MAX", "MEAN", "L2"], widths: [-44, -4, -14, 12, 12, 12, 12]))
        for t in tensors {
            func f(_ v: Double?) -> String { v.map { String(format: "%.5g", $0) } ?? "-" }
            print(row([t.name, t.dtype, t.shape.map(String.init).joined(separator: "×"), f(t.min), f(t.max), f(t.mean), f(t.l2)],
                      widths: [-44, -4, -14, 12, 12, 12, 12]))
        }
    }
}

struct CkptDiff: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "diff", abstract: "Per-tensor change between two checkpoints; embedding rows added/changed.")
    @Argument(help: "Older checkpoint.") var a: String
    @Argument(help: "Newer checkpoint.") var b: String
    @Flag(help: "JSON output.") var json = false

    func run() throws {
        let da = try resolveCheckpoint(a), db = try resolveCheckpoint(b)
        let fa = try SafeTensorsFile(url: da.appendingPathComponent(CheckpointStore.modelFileName))
        let fb = try SafeTensorsFile(url: db.appendingPathComponent(CheckpointStore.modelFileName))
        let changes = try diffTensors(fa, fb)
        if json { return try printJSON(changes) }
        let ma = try CheckpointStore.loadManifest(da), mb = try CheckpointStore.loadManifest(db)
        print("A \(da.path) (step \(ma.step), \(ma.samplesTrained) samples)")
        print("B \(db.path) (step \(mb.step), \(mb.samplesTrained) samples)")
        print(row(["TENSOR", "STATUS", "L2 CHANGE", "MAX |Δ|", "REL", "ROWS"], widths: [-44, -10, 12, 12, 10, 0]))
        for c in changes {
            func f(_ v: Double?) -> String { v.map { String(format: "%.4g", $0) } ?? "-" }
            let rows = c.rowsAdded.map { "+\($0) added, \(c.rowsChanged ?? 0) changed, -\(c.rowsRemoved ?? 0) removed" } ?? ""
            print(row([c.name, c.status, f(c.l2Change), f(c.maxAbsChange), f(c.relativeChange), rows], widths: [-44, -10, 12, 12, 10, 0]))
        }
    }
}

struct CkptVerify: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify", abstract: "Check checksums and structure; exit non-zero on any problem.")
    @Argument(help: "Checkpoint directory, checkpoints root, or ROOT/STEP.") var path: String
    @Flag(help: "JSON output.") var json = false

    struct Report: Codable { var path: String; var ok: Bool; var problems: [String] }

    func run() throws {
        let dir = try resolveCheckpoint(path)
        var problems = CheckpointStore.verify(dir).map(\.description)
        if problems.isEmpty {
            do { _ = try ModelFamilies.loadTrainable(dir, verify: false) } catch { problems.append("does not load: \(error)") }
        }
        let report = Report(path: dir.path, ok: problems.isEmpty, problems: problems)
        if json { try printJSON(report) } else {
            print(problems.isEmpty ? "OK \(dir.path)" : "FAILED \(dir.path)")
            for p in problems { print("  - \(p)") }
        }
        if !problems.isEmpty { throw ExitCode(1) }
    }
}

/// A table row: negative width = left-aligned, positive = right-aligned, 0 = as is.
func row(_ cells: [String], widths: [Int]) -> String {
    zip(cells, widths).map { cell, w in
        let n = abs(w), pad = String(repeating: " ", count: max(0, n - cell.count))
        return w == 0 ? cell : (w < 0 ? cell + pad : pad + cell)
    }.joined(separator: " ")
}
