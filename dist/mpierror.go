package dist

import "fmt"

// LibraryEnv names the environment variable holding an explicit path to
// libmpi; when it is set, no other library is tried.
const LibraryEnv = "MAI_MPI_LIB"

// MPIError is a failed MPI call.
type MPIError struct {
	Func    string // the MPI function, such as "MPI_Allreduce"
	Code    int    // the MPI error code
	Message string // MPI_Error_string's text
}

// Error formats the failure with the function, message and code.
func (e *MPIError) Error() string {
	return fmt.Sprintf("dist: %s failed: %s (MPI error %d)", e.Func, e.Message, e.Code)
}
