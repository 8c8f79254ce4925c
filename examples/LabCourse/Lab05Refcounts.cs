// Lab 5: a model of who holds whom among the container, group and device files and objects,
// which predicts the kernel's counts after each step of a sequence.

using Vfio.Sim.Labs;

namespace LabCourse;

/// <summary>Lab 5's solution.</summary>
internal sealed class RefcountModel : RefcountSolution
{
    /// <inheritdoc/>
    public override IReadOnlyList<RefcountState> Predict(RefcountSequence sequence)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        int containerFds = 0, groupFds = 0, firstDeviceFds = 0, secondDeviceFds = 0;
        bool attached = false;
        var states = new List<RefcountState>();
        foreach (RefcountAction a in sequence.Steps)
        {
            switch (a)
            {
                case RefcountAction.OpenContainer: containerFds++; break;
                case RefcountAction.OpenGroup: groupFds++; break;
                case RefcountAction.SetContainer: attached = true; break;
                case RefcountAction.SetIommu: break;
                case RefcountAction.GetDeviceFd: firstDeviceFds++; break;
                case RefcountAction.DupDeviceFd: firstDeviceFds++; break;
                case RefcountAction.GetSecondDeviceFd: secondDeviceFds++; break;
                case RefcountAction.CloseContainer: containerFds--; break;
                case RefcountAction.CloseGroup: groupFds--; break;
                case RefcountAction.CloseDevice: firstDeviceFds--; break;
                case RefcountAction.CloseDup: firstDeviceFds--; break;
                case RefcountAction.CloseSecondDevice: secondDeviceFds--; break;
                default: throw new ArgumentOutOfRangeException(nameof(sequence), a, "unknown step");
            }

            // Device files: one per GET_DEVICE_FD, alive while an fd points at it.
            int deviceFiles = (firstDeviceFds > 0 ? 1 : 0) + (secondDeviceFds > 0 ? 1 : 0);

            // The first open holds the group's file until the last close; the group's file,
            // while alive, keeps the group in its container.
            int groupFile = groupFds + (deviceFiles > 0 ? 1 : 0);
            attached &= groupFile > 0;
            int users = attached ? 1 + (deviceFiles > 0 ? 1 : 0) : 0;
            int container = containerFds + (attached ? 1 : 0);
            states.Add(new RefcountState(containerFds, groupFile, firstDeviceFds, container, users, 1 + deviceFiles, deviceFiles));
        }

        return states;
    }
}
