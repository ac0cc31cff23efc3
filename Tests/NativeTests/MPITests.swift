// MPI smoke test: runs the built `streamrec selftest mpi` under mpirun and checks every rank's
// results. MPI cannot be initialized twice in one process, so it is tested out of process.
import Foundation
import Testing
import TestSupport

struct RankReport {
    let rank: Int
    let size: Int
    let allreduce: [Double]
    let allgatherv: [Double]
    let broadcast: String
    let joinedSize: Int?
}

func parseRankReports(_ output: String) throws -> [RankReport] {
    try output.split(separator: "\n").filter { $0.hasPrefix(#"{"rank":"#) }.map { line in
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        return RankReport(rank: try #require(object["rank"] as? Int), size: try #require(object["size"] as? Int),
                          allreduce: try #require(object["allreduce"] as? [Double]),
                          allgatherv: try #require(object["allgatherv"] as? [Double]),
                          broadcast: try #require(object["broadcast"] as? String),
                          joinedSize: object["joined_size"] as? Int)
    }
}

@Suite("MPI funnel (Open MPI)", .serialized, .timeLimit(.minutes(2)))
struct MPITests {
    func runSelfTest(ranks: Int, extra: [String] = []) throws -> (ProcessResult, [RankReport]) {
        let binary = try #require(streamrecBinary(), "streamrec binary not found; run `swift build` or set STREAMREC_BIN")
        let mpirun = try #require(findExecutable("mpirun"), "mpirun not found; run scripts/setup.sh")
        let result = try runProcess(mpirun, ["-np", "\(ranks)", "--oversubscribe", binary, "selftest", "mpi"] + extra,
                                    environment: mpiTestEnvironment, timeout: .seconds(90))
        #expect(!result.timedOut, "mpirun timed out; stderr: \(result.stderr)")
        #expect(result.status == 0, "mpirun exited \(result.status); stderr: \(result.stderr)")
        return (result, try parseRankReports(result.stdout))
    }

    @Test("mpirun -np 2: allreduce, allgatherv and broadcast agree on every rank")
    func twoRanks() throws {
        let (result, reports) = try runSelfTest(ranks: 2)
        #expect(reports.count == 2, "stdout: \(result.stdout)")
        #expect(Set(reports.map(\.rank)) == [0, 1])
        for r in reports {
            #expect(r.size == 2)
            #expect(r.allreduce == [3, 6, 9, 12])          // (1+2)·[1,2,3,4]
            #expect(r.allgatherv == [0, 100, 101])         // rank 0: [0]; rank 1: [100, 101]
            #expect(r.broadcast == "hello from rank 0")
        }
    }

    @Test("mpirun -np 3 --dynamic: a late rank joins via open_port/accept/connect/merge")
    func dynamicJoin() throws {
        let (result, reports) = try runSelfTest(ranks: 3, extra: ["--dynamic"])
        #expect(reports.count == 3, "stdout: \(result.stdout)")
        for r in reports {
            #expect(r.allreduce == [6, 12, 18, 24])
            #expect(r.allgatherv == [0, 100, 101, 200, 201, 202])
            #expect(r.joinedSize == 3)
        }
    }
}
