import Foundation
import StreamRecNumerics
import TestSupport

/// The fault loop of the exactly-once tests: `attempts` times, start the job (`start(attempt)`);
/// once `progress()` (batches trained) reaches a seeded point of `total` — a fraction in
/// 0.15…0.30, plus `spacing` × attempt — kill -9 a seeded rank (mpirun then ends the job), wait
/// for it to end and note the newest checkpoint's `samplesTrained()`. The moments come from `rng`
/// (the caller prints its seed), so a failure replays.
func killRanksAtSeededMoments(_ label: String, attempts: Int, spacing: Double, total: Int, rng: inout SplitMix64,
                              start: (Int) throws -> BackgroundProcess, progress: () throws -> Int,
                              samplesTrained: () -> Int) throws -> (kills: Int, intermediate: [Int]) {
    var kills = 0
    var intermediate: [Int] = []
    for attempt in 0 ..< attempts {
        let job = try start(attempt)
        let fraction = Double.random(in: 0.15 ... 0.30, using: &rng) + spacing * Double(attempt)
        let target = Int(Double(total) * fraction)
        let victimRank = Int.random(in: 0 ... 1, using: &rng)
        print("\(label): attempt \(attempt): kill rank \(victimRank) after \(target) of \(total) batches")
        let reached = try poll(for: 120) { try progress() >= target || !job.isRunning }
        if reached, job.isRunning, let victim = job.mpiRank(victimRank) {
            kill(victim, SIGKILL)
            kills += 1
        }
        if !job.waitForExit(within: 60) { job.kill() }
        intermediate.append(samplesTrained())
    }
    return (kills, intermediate)
}
