import Foundation
import Testing
import TestSupport

/// `streamrec gen behavior` through the real binary, and `gen` keeping its Criteo invocation.
@Suite struct GenBehaviorCommandTests {
    @Test func helpNamesTheOptionsAndFiles() throws {
        let r = try StreamRecBinary.run(["gen", "behavior", "--help"])
        #expect(r.status == 0)
        for needle in ["--users", "--items", "--seed", "--out", "--events-per-user", "--holdout-events", "--truth-top",
                       "--start-time", "user_behavior.csv", "item.csv", "user.csv", "heldout.csv", "truth.csv", "summary.json"] {
            #expect(r.stdout.contains(needle), "`gen behavior --help` lacks \(needle)")
        }
        let parent = try StreamRecBinary.run(["gen", "--help"])
        #expect(parent.stdout.contains("criteo") && parent.stdout.contains("behavior"))
    }

    @Test func writesTheFilesAndPrintsTheReferenceFigures() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("behavior").path
        let r = try StreamRecBinary.run(["gen", "behavior", "--users", "60", "--items", "200", "--events-per-user", "20",
                                         "--holdout-events", "2", "--truth-top", "15", "--seed", "5", "--out", out])
        #expect(r.status == 0, "\(r.stderr)")
        for name in ["user_behavior.csv", "item.csv", "user.csv", "heldout.csv", "truth.csv", "summary.json"] {
            #expect(FileManager.default.fileExists(atPath: out + "/" + name), "missing \(name)")
        }
        #expect(r.stdout.contains("oracle") && r.stdout.contains("popularity") && r.stdout.contains("random"))
        #expect(r.stdout.contains("NDCG@10"))
        let heldOut = try String(contentsOfFile: out + "/heldout.csv", encoding: .utf8).split(separator: "\n")
        #expect(heldOut.count == 120)
        let truth = try String(contentsOfFile: out + "/truth.csv", encoding: .utf8).split(separator: "\n")
        #expect(truth.count == 120 * 15)

        let bad = try StreamRecBinary.run(["gen", "behavior", "--users", "5", "--items", "3", "--out", out])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("items"))
    }

    /// `gen --rows …` (no subcommand) is `gen criteo --rows …`, byte for byte.
    @Test func criteoIsTheDefault() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a.tsv").path, b = dir.appendingPathComponent("b.tsv").path
        #expect(try StreamRecBinary.run(["gen", "--rows", "500", "--out", a, "--seed", "3"]).status == 0)
        #expect(try StreamRecBinary.run(["gen", "criteo", "--rows", "500", "--out", b, "--seed", "3"]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: a)) == Data(contentsOf: URL(fileURLWithPath: b)))
        #expect(try Data(contentsOf: URL(fileURLWithPath: a + ".prob")) == Data(contentsOf: URL(fileURLWithPath: b + ".prob")))
        #expect(try String(contentsOfFile: a, encoding: .utf8).split(separator: "\n").count == 500)
    }
}
