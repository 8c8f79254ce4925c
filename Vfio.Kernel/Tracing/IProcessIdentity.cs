// What the timeline needs to know about the process a task runs for (the kernel's
// current->tgid and comm): the platform's process implements it, so the kernel runtime
// can group a task's timeline track under its process without knowing the platform.

namespace Vfio.Kernel;

/// <summary>A simulated process as a <see cref="KTask.Context"/>: its pid and command name, for timelines.</summary>
public interface IProcessIdentity
{
    /// <summary>The process id (tgid).</summary>
    int Pid { get; }

    /// <summary>The command name.</summary>
    string Comm { get; }
}
