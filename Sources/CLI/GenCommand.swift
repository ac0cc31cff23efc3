import ArgumentParser
import Foundation
import Logging
import Features

struct Gen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write synthetic data from a planted model: Criteo rows (default) or user-behaviour events.",
        discussion: """
        streamrec gen [criteo] --rows N --out FILE [--holdout-rows N] [--seed S]: Criteo-format \
        rows with each row's true click probability in FILE.prob (see `streamrec gen criteo --help`). \
        criteo is the default subcommand, so `streamrec gen --rows … --out …` writes Criteo rows.

        streamrec gen behavior --users N --items M --seed S --out DIR: Tianchi-format behaviour \
        events (user_behavior.csv, item.csv, user.csv) from a planted sequential model, each user's \
        last events held out (heldout.csv) with the true next-item probabilities (truth.csv) and \
        the oracle / popularity / random NDCG@10 and HR@10 (summary.json) — see \
        `streamrec gen behavior --help`.
        """,
        subcommands: [GenCriteo.self, GenBehavior.self],
        defaultSubcommand: GenCriteo.self)
}

struct GenCriteo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "criteo",
        abstract: "Write synthetic Criteo-format rows from a planted model, with each row's true click probability.",
        discussion: """
        Rows follow Criteo's day-file layout (label, 13 integer counts, 26 hashed categories; \
        empty = missing). Categories are Zipf-distributed over fields of very different \
        cardinality; dense counts are log-normal with missing values; the click probability has a \
        non-linear interaction the deep part can learn. Beside FILE, FILE.prob holds the true \
        probability of each row, so a model's AUC can be compared with the oracle's. \
        --holdout-rows writes further rows from the same planted model to a second file.
        """)

    @Option(help: "Rows to write to --out.") var rows: Int = 100_000
    @Option(help: "Output file (Criteo TSV).") var out: String
    @Option(help: "Additional held-out rows from the same planted model.") var holdoutRows: Int = 0
    @Option(help: "File for the held-out rows (default: OUT with .test before the extension).") var holdoutOut: String?
    @Option(help: "Seed of the planted model and the samples.") var seed: UInt64 = 1
    @Flag(help: "Omit the label column (rows for inference).") var unlabelled = false
    @OptionGroup(title: "Logging") var logging: LogOptions

    func validate() throws {
        if rows < 0 || holdoutRows < 0 { throw ValidationError("row counts must be non-negative") }
    }

    func run() throws {
        _ = try logging.start("gen", tag: "gen:")
        var cfg = SyntheticCriteo.Configuration.default
        cfg.labelled = !unlabelled
        var gen = SyntheticCriteo(seed: seed, configuration: cfg)
        try write(&gen, rows: rows, to: out)
        if holdoutRows > 0 {
            let path = holdoutOut ?? Self.holdoutPath(for: out)
            try write(&gen, rows: holdoutRows, to: path)
        }
    }

    static func holdoutPath(for out: String) -> String {
        let url = URL(fileURLWithPath: out)
        let ext = url.pathExtension
        let base = url.deletingPathExtension().path
        return ext.isEmpty ? base + ".test" : base + ".test." + ext
    }

    private func write(_ gen: inout SyntheticCriteo, rows: Int, to path: String) throws {
        try FileManager.default.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(),
                                                withIntermediateDirectories: true)
        let data = try BufferedFileWriter(path: path, atomic: true)
        let probs = try BufferedFileWriter(path: path + ".prob", atomic: true)
        let progress = Progress(label: "gen \(path)", total: Int64(rows))
        for i in 0..<rows {
            let p = gen.appendRow(to: &data.buffer)
            data.buffer.append(0x0A)
            try probs.write(Array(String(format: "%.6f\n", p).utf8))
            try data.maybeFlush()
            try probs.maybeFlush()
            if i & 0x3FFF == 0 { progress.update(Int64(i)) }
        }
        try data.close()
        try probs.close()
        progress.finish(Int64(rows))
        Logger(label: "gen").tagged("gen:").info("wrote \(rows) rows to \(path) (probabilities in \(path).prob)")
    }
}

struct GenBehavior: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "behavior",
        abstract: "Write synthetic user-behaviour events (Tianchi CSV) from a planted sequential model, with a held-out split and the true next-item probabilities.",
        discussion: """
        Users have latent tastes, items latent vectors, categories and a Zipf-like popularity; a \
        user's next item is drawn from a known mixture of taste × popularity and the neighbours of \
        the user's last few items, never an item the user already consumed; behaviour is pv, cart, \
        fav or buy (buy likelier for high-affinity items); events come in sessions seconds to \
        minutes apart, separated by hours. The planted model is documented in \
        Sources/Features/Behavior/SyntheticBehavior.swift.

        Writes in DIR (headerless CSV; ids are decimal integers):
          user_behavior.csv  user,item,behavior,time: every event but the held-out
                             ones, all users in time order
          heldout.csv        user,item,behavior,time: each user's last K events
                             (--holdout-events), in time order
          truth.csv          user,time,rank,item,probability: per held-out event,
                             the --truth-top most probable next items given the
                             user's history before it, rank 1 first
          item.csv           item,category,shop,brand
          user.csv           user,sex,age,pur_power
          summary.json       sizes, configuration, and NDCG@10 / HR@10 on the
                             held-out events (consumed items masked) of the
                             oracle, the popularity baseline and a random
                             ranking: realised, and expected under the true
                             distribution for the oracle and random
        Deterministic for a seed and the options (not the machine or thread count).
        """)

    @Option(help: "Users.") var users: Int = 10_000
    @Option(help: "Items.") var items: Int = 5_000
    @Option(help: "Mean events per user, held-out ones included (each user has between half and 1.5 times as many).")
    var eventsPerUser: Int = 100
    @Option(help: "Each user's last K events go to heldout.csv instead of user_behavior.csv.") var holdoutEvents: Int = 1
    @Option(help: "Most probable next items written to truth.csv per held-out event.") var truthTop: Int = 100
    @Option(help: "Unix seconds; every user's first event falls in the following day.") var startTime: Int64 = 1_511_539_200
    @Option(help: "Seed of the planted model and the samples.") var seed: UInt64 = 1
    @Option(help: "Output directory (created if needed).") var out: String
    @OptionGroup(title: "Logging") var logging: LogOptions

    var configurationValue: SyntheticBehavior.Configuration {
        SyntheticBehavior.Configuration(users: users, items: items, eventsPerUser: eventsPerUser,
                                        holdoutEvents: holdoutEvents, truthTop: truthTop, startTime: startTime)
    }

    func validate() throws {
        do { try configurationValue.validate() } catch { throw ValidationError(error.message) }
    }

    func run() throws {
        let logger = try logging.start("gen", tag: "gen:")
        let started = Date()
        let generator = SyntheticBehavior(seed: seed, configuration: configurationValue)
        let data = generator.generate()
        let generated = Date()
        try generator.write(data, to: out)
        let s = data.summary
        let seconds = Date().timeIntervalSince(started)
        logger.info(.init(stringLiteral: String(format: "generated in %.2f s, written in %.2f s",
            generated.timeIntervalSince(started), seconds - generated.timeIntervalSince(started))))
        func row(_ name: String, _ f: BehaviorSummary.Figures) -> String {
            "  " + name.padding(toLength: 11, withPad: " ", startingAt: 0)
                + String(format: " %.4f   %.4f     ", f.ndcg, f.hitRate)
                + (f.expectedNDCG.map { String(format: "%.4f", $0) } ?? "   -  ") + "         "
                + (f.expectedHitRate.map { String(format: "%.4f", $0) } ?? "   -")
        }
        let path = { (name: String) in (out as NSString).appendingPathComponent(name) }
        print("""
        wrote \(s.trainingEvents) events of \(s.users) users over \(s.items) items to \(path(SyntheticBehavior.FileName.behavior))
        wrote \(s.heldOutEvents) held-out events to \(path(SyntheticBehavior.FileName.heldOut)), \
        their top-\(s.truthTop) true next items to \(path(SyntheticBehavior.FileName.truth))
        wrote \(path(SyntheticBehavior.FileName.items)), \(path(SyntheticBehavior.FileName.users)), \(path(SyntheticBehavior.FileName.summary))
        held-out next item, consumed items masked (\(s.heldOutEvents) events):
                      NDCG@\(s.k)  HR@\(s.k)    E[NDCG@\(s.k)]   E[HR@\(s.k)]
        \(row("oracle", s.oracle))
        \(row("popularity", s.popularity))
        \(row("random", s.random))
        """)
    }
}
