// Which local processes are an MPI job's ranks: the children of a process (mpirun) and the rank
// each one's environment names. One place for the /proc reading the supervisor and the tests do.
import Foundation

public enum ProcessTree {
    /// `pid`'s children: /proc/PID/task/*/children (every thread's: a child belongs to the thread
    /// that forked it) where the kernel has it, else a /proc scan.
    public static func children(of pid: Int32) -> [Int32] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        if let first = tasks.first, FileManager.default.fileExists(atPath: "/proc/\(pid)/task/\(first)/children") {
            return tasks.flatMap { task in
                ((try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? "")
                    .split(separator: " ").compactMap { Int32($0) }
            }.sorted()
        }
        let all = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return all.compactMap { Int32($0) }.filter { child in
            // /proc/PID/stat: "pid (comm) state ppid …"; comm may hold spaces, so split after ')'.
            guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == pid
        }.sorted()
    }

    /// The MPI rank (`OMPI_COMM_WORLD_RANK`) in `pid`'s environment, if it is a rank.
    public static func mpiRank(of pid: Int32) -> Int? {
        guard let env = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ")) else { return nil }
        let prefix = "OMPI_COMM_WORLD_RANK="
        for entry in env.split(separator: 0) {
            let s = String(decoding: entry, as: UTF8.self)
            if s.hasPrefix(prefix) { return Int(s.dropFirst(prefix.count)) }
        }
        return nil
    }

    /// The ranks among `mpirun`'s children, by rank (pid order says nothing about the rank).
    public static func localRanks(of mpirun: Int32) -> [Int: Int32] {
        var out: [Int: Int32] = [:]
        for child in children(of: mpirun) { if let r = mpiRank(of: child) { out[r] = child } }
        return out
    }
}
