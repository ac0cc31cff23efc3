import Testing
import Foundation
import TestSupport
import Features
import FeatureStore
import Streaming
import StreamRecNumerics
import TrainerService

@Suite("restart policy and hostfile")
struct RestartPolicyTests {
    @Test("back-off doubles up to the cap, resets after a stable run; gives up at the N-th failure within the window")
    func ledger() {
        var policy = RestartPolicy()
        policy.maxFailures = 4; policy.window = .seconds(100); policy.initialBackoff = .seconds(1); policy.maxBackoff = .seconds(3)
        policy.stableAfter = .seconds(60)
        var l = RestartLedger(policy: policy)
        #expect(l.recordFailure(at: .seconds(0), ranFor: .seconds(1)) == .restart(after: .seconds(1)))
        #expect(l.recordFailure(at: .seconds(5), ranFor: .seconds(1)) == .restart(after: .seconds(2)))
        #expect(l.recordFailure(at: .seconds(10), ranFor: .seconds(1)) == .restart(after: .seconds(3)))
        guard case .giveUp(let why) = l.recordFailure(at: .seconds(20), ranFor: .seconds(1)) else { Issue.record("did not give up"); return }
        #expect(why.contains("4 abnormal ends within 100 s"))
        // Failures older than the window no longer count; a long healthy run resets the back-off.
        var m = RestartLedger(policy: policy)
        for t in [0, 50, 120, 170] { _ = m.recordFailure(at: .seconds(t), ranFor: .seconds(1)) }
        #expect(m.failures.count == 2)
        #expect(m.recordFailure(at: .seconds(400), ranFor: .seconds(200)) == .restart(after: .seconds(1)))
        var never = RestartPolicy(); never.maxFailures = 0
        var n = RestartLedger(policy: never)
        #expect(n.recordFailure(at: .zero, ranFor: .zero) == .giveUp("restarts are off (--max-failures 0)"))
    }

    @Test("hostfile: hosts, slots, comments; a bad slots value names the line")
    func hostfile() throws {
        let h = try Hostfile(parsing: "# cluster\nb slots=2\n\nc   # spare\n", path: "hosts")
        #expect(h.entries.map(\.host) == ["b", "c"] && h.slots == 3)
        #expect(h.text == "b slots=2\nc\n")
        #expect(throws: SupervisorError.self) { try Hostfile(parsing: "b slots=x\n", path: "hosts") }
        do { _ = try Hostfile(parsing: "b slots=0", path: "hosts") } catch { #expect("\(error)".contains("hosts:1")) }
        #expect(throws: SupervisorError.self) { try Hostfile(parsing: "# nothing\n", path: "hosts") }
    }
}

@Suite("streamrec supervise as a process")
struct SuperviseProcessTests {
    @Test("a job that keeps failing: restarted with back-off, then given up with the reason and a non-zero exit; exit 0 ends it")
    func givesUp() throws {
        let bin = try #require(streamrecBinary())
        let r = try runProcess(bin, ["supervise", "--max-failures", "3", "--initial-backoff", "0.1", "--", "/bin/sh", "-c", "exit 7"],
                               timeout: .seconds(30))
        #expect(r.status == 7, "the job's status: \(r.stderr)")
        #expect(r.stderr.components(separatedBy: "starting the job (start ").count - 1 == 3)
        #expect(r.stderr.contains("restarting in 0.1 s") && r.stderr.contains("restarting in 0.2 s"))
        #expect(r.stderr.contains("GIVING UP") && r.stderr.contains("3 abnormal ends within 600 s"), "\(r.stderr)")
        let ok = try runProcess(bin, ["supervise", "--", "/bin/true"], timeout: .seconds(30))
        #expect(ok.status == 0 && ok.stderr.contains("ended normally"))
        let bad = try runProcess(bin, ["supervise", "--", "mpirun", "{np}"], timeout: .seconds(30))
        #expect(bad.status != 0 && bad.stderr.contains("need --hostfile"))
    }
}

/// `streamrec supervise -- mpirun … train`: a rank killed with SIGKILL three times at seeded
/// random moments; the supervisor restarts the job each time and every row is trained once.
@Suite(.serialized) struct SupervisorTests {
    let t = OnlineTrainingTests()

    /// The processes `pid`'s child (mpirun) started, with the MPI rank each one's environment names.
    func ranks(under supervisor: Int32) -> [Int: Int32] {
        ProcessTree.children(of: supervisor).reduce(into: [:]) { out, mpirun in out.merge(ProcessTree.localRanks(of: mpirun)) { a, _ in a } }
    }

    @Test func theSupervisorBringsTheJobBackAfterEachKill() throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let stats = try t.fillStore(redisPort: redis.port, dir: dir, rows: 6_000, batch: 50, shards: 4)
        var rows = 6_000
        let ck = dir.appendingPathComponent("ck").path
        let mpirun = try #require(findExecutable("mpirun"))
        let bin = try #require(streamrecBinary())
        let seed = UInt64(ProcessInfo.processInfo.environment["STREAMREC_FAULT_SEED"] ?? "") ?? UInt64.random(in: 1...999_999)
        print("theSupervisorBringsTheJobBackAfterEachKill: fault seed \(seed) (replay with STREAMREC_FAULT_SEED=\(seed))")
        var rng = SplitMix64(seed: seed)
        let job = try BackgroundProcess(bin, ["supervise", "--initial-backoff", "0.5", "--", mpirun, "-np", "2"]
                                        + (try t.trainArgs(redisPort: redis.port, stats: stats, ck: ck).dropLast(2)),  // resident: no --until-idle
                                        environment: mpiTestEnvironment, log: dir.appendingPathComponent("supervise.log"))
        defer { job.kill() }
        var recovery: [Double] = []
        for kill in 1...3 {
            // A seeded moment after the job (re)started and trained: the job runs, then the kill lands
            // 0.2–2 s later, while more batches arrive.
            #expect(try poll(for: 120) { try ranks(under: job.pid).count == 2 && t.counters(redisPort: redis.port, shards: 4).trained.reduce(0, +) > 0 },
                    "job running before kill \(kill): \(job.output.suffix(3000))")
            _ = try t.fillStore(redisPort: redis.port, dir: dir, batchSizes: Array(repeating: 50, count: 40), shards: 4, seed: 100 + UInt64(kill))
            rows += 2_000
            let delay = Double.random(in: 0.2...2.0, using: &rng)
            let victim = Int.random(in: 0...1, using: &rng)
            print("theSupervisorBringsTheJobBackAfterEachKill: kill \(kill): rank \(victim) after \(String(format: "%.2f", delay)) s")
            Thread.sleep(forTimeInterval: delay)   // the seeded fault moment itself, not a synchronisation
            let pid = try #require(ranks(under: job.pid)[victim], "rank \(victim) not found: \(job.output.suffix(2000))")
            let killedAt = ContinuousClock.now
            Foundation.kill(pid, SIGKILL)
            #expect(try poll(for: 60) { job.output.components(separatedBy: "starting the job (start \(kill + 1))").count > 1 && ranks(under: job.pid).count == 2 },
                    "restart \(kill): \(job.output.suffix(3000))")
            let d = ContinuousClock.now - killedAt
            recovery.append(Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
        }
        #expect(job.isRunning)
        #expect(try poll(for: 180) { let c = try t.counters(redisPort: redis.port, shards: 4); return c.trained == c.appended && c.trained.reduce(0, +) == rows / 50 },
                "\(job.output.suffix(3000))")
        kill(job.pid, SIGTERM)
        #expect(job.waitForExit(within: 60), "\(job.output.suffix(3000))")
        #expect(job.exitStatus == 0, "\(job.output.suffix(3000))")
        #expect(job.output.components(separatedBy: "ended abnormally").count - 1 == 3, "three abnormal ends: \(job.output.suffix(3000))")
        #expect(try t.manifest(ck)["samples_trained"] as? Int == rows, "seed \(seed)")
        print("SUPERVISOR FIGURES: 3 kills, job back (2 ranks running) after \(recovery.map { String(format: "%.1f", $0) }.joined(separator: ", ")) s; "
              + "rows \(rows), samples_trained \(rows)")
    }
}
