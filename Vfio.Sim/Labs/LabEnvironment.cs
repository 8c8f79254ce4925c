// What a code lab hands the student's solution.

using Vfio.Platform.Proc;

namespace Vfio.Sim.Labs;

/// <summary>
/// What a code lab's solution is given: the simulation, the student's own process (traced),
/// and the device the lab is about. Solutions make their syscalls as <see cref="Process"/>.
/// </summary>
public sealed class LabEnvironment
{
    /// <summary>An environment on <paramref name="sim"/> for <paramref name="process"/>, about <paramref name="device"/>.</summary>
    public LabEnvironment(VfioSim sim, SimProcess process, string? device = null)
    {
        ArgumentNullException.ThrowIfNull(sim);
        ArgumentNullException.ThrowIfNull(process);
        Sim = sim;
        Process = process;
        Device = device;
    }

    /// <summary>The simulation.</summary>
    public VfioSim Sim { get; }

    /// <summary>The student's process.</summary>
    public SimProcess Process { get; }

    /// <summary>The device the lab is about (a PCI address or an mdev UUID), if any.</summary>
    public string? Device { get; }

    /// <inheritdoc/>
    public override string ToString() => $"{Process} on {Sim}";
}
