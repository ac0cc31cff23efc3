// Why this shim exists: Open MPI's predefined handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...)
// are C macros that take the address of extern structs or cast integers to pointers; Swift's
// C importer cannot import such macros, so each handle StreamRec needs is exposed here as a
// tiny `static inline` function with a `streamrec_mpi_` prefix. Only Sources/Cluster uses them.
#ifndef STREAMREC_CMPI_SHIM_H
#define STREAMREC_CMPI_SHIM_H
#include <mpi.h>

// Communicators
static inline MPI_Comm streamrec_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm streamrec_mpi_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Comm streamrec_mpi_comm_self(void) { return MPI_COMM_SELF; }

// Datatypes
static inline MPI_Datatype streamrec_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype streamrec_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype streamrec_mpi_int(void) { return MPI_INT; }
static inline MPI_Datatype streamrec_mpi_int32_t(void) { return MPI_INT32_T; }
static inline MPI_Datatype streamrec_mpi_int64_t(void) { return MPI_INT64_T; }
static inline MPI_Datatype streamrec_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype streamrec_mpi_char(void) { return MPI_CHAR; }

// Reduction operations
static inline MPI_Op streamrec_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op streamrec_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op streamrec_mpi_min(void) { return MPI_MIN; }

// Sentinels, error handlers and constants
static inline void *streamrec_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Info streamrec_mpi_info_null(void) { return MPI_INFO_NULL; }
static inline MPI_Status *streamrec_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Errhandler streamrec_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int streamrec_mpi_max_port_name(void) { return MPI_MAX_PORT_NAME; }
static inline int streamrec_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int streamrec_mpi_success(void) { return MPI_SUCCESS; }
static inline int streamrec_mpi_thread_single(void) { return MPI_THREAD_SINGLE; }
static inline int streamrec_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int streamrec_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int streamrec_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }

#endif

static inline int streamrec_mpi_undefined(void) { return MPI_UNDEFINED; }
