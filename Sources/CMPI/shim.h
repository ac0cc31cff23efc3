// Open MPI's predefined handles are macros over extern structs; Swift cannot import them,
// so each one used by StreamRec is exposed here as a tiny inline function.
#include <mpi.h>
static inline MPI_Comm streamrec_mpi_comm_world(void) { return MPI_COMM_WORLD; }
