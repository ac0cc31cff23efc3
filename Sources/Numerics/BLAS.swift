import COpenBLAS

/// The one funnel to OpenBLAS. Matrices are row-major; shapes are checked here so a caller's
/// mistake is a precondition failure with a message, not a silent out-of-bounds read in C.
public enum BLAS {
    public enum Transpose: Sendable { case none, transpose }

    /// Sets OpenBLAS's own worker-thread count. Trainers pin this to 1 per MPI rank so ranks do
    /// not oversubscribe cores.
    public static func setThreads(_ count: Int) {
        openblas_set_num_threads(Int32(count))
    }

    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// C[m×n] = alpha · op(A)[m×k] · op(B)[k×n] + beta · C, row-major, dense leading dimensions.
    public static func sgemm(
        _ transA: Transpose, _ transB: Transpose,
        m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        beta: Float = 0, c: UnsafeMutablePointer<Float>
    ) {
        precondition(m > 0 && n > 0 && k > 0, "sgemm: empty shape m=\(m) n=\(n) k=\(k)")
        let lda = transA == .none ? k : m
        let ldb = transB == .none ? n : k
        cblas_sgemm(CblasRowMajor,
                    transA == .none ? CblasNoTrans : CblasTrans,
                    transB == .none ? CblasNoTrans : CblasTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
                    beta, c, Int32(n))
    }

    /// y[n] = alpha · xᵀ[m] · A[m×n] + beta · y: a row vector times a row-major matrix
    /// (`cblas_sgemv` with the matrix transposed). Unlike sgemm it does not pack A, which is what
    /// makes single-row inference cheap.
    public static func vecmat(m: Int, n: Int, alpha: Float = 1, x: UnsafePointer<Float>, a: UnsafePointer<Float>,
                              beta: Float = 0, y: UnsafeMutablePointer<Float>) {
        precondition(m > 0 && n > 0, "vecmat: empty shape m=\(m) n=\(n)")
        cblas_sgemv(CblasRowMajor, CblasTrans, Int32(m), Int32(n), alpha, a, Int32(n), x, 1, beta, y, 1)
    }

    /// y[m] = alpha · A[m×n] · x[n] + beta · y, A row-major (`cblas_sgemv`, no transpose): one
    /// query's scores against m rows without sgemm's packing of A.
    public static func matvec(m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, x: UnsafePointer<Float>,
                              beta: Float = 0, y: UnsafeMutablePointer<Float>) {
        precondition(m > 0 && n > 0, "matvec: empty shape m=\(m) n=\(n)")
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(m), Int32(n), alpha, a, Int32(n), x, 1, beta, y, 1)
    }

    /// Buffer-checked form of `sgemm` for callers holding buffer pointers.
    public static func sgemm(
        _ transA: Transpose, _ transB: Transpose,
        m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafeMutableBufferPointer<Float>, b: UnsafeMutableBufferPointer<Float>,
        beta: Float = 0, c: UnsafeMutableBufferPointer<Float>
    ) {
        precondition(a.count >= m * k && b.count >= k * n && c.count >= m * n,
                     "sgemm: buffers too small for m=\(m) n=\(n) k=\(k)")
        sgemm(transA, transB, m: m, n: n, k: k, alpha: alpha,
              a: UnsafePointer(a.baseAddress!), b: UnsafePointer(b.baseAddress!),
              beta: beta, c: c.baseAddress!)
    }
}
