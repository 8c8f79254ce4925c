// Lab 7: KVM as an external user of a group.
// Read the handout first: vfio-sim lab show 7 (or docs/labs/lab07-kvm.md).
// The grader calls Attach, looks at what KVM holds, then calls Detach — on linux-6.12 and
// again on the checked external-user API of v3.11–v5.18. Keep what Attach opens in fields.

using Vfio.Sim.Labs;

namespace VfioSimLab;

public sealed class KvmExternalUser : KvmExternalUserSolution
{
    // Keep here what Attach opens, for Detach, e.g.
    //   private VfioContainerFd? _container;
    //   private VfioGroupFd? _group;
    //   private int _vm = -1, _kvmVfio = -1;

    public override void Attach(LabEnvironment env)
    {
        // TODO step 1: open the container (new VfioContainerFd(env.Process)) and the group
        //   (new VfioGroupFd(env.Process, env.Sim.GroupOf(env.Device))); put the group in the
        //   container and give the container an IOMMU (VfioExtension.Type1v2).
        // TODO step 2: open /dev/kvm (env.Process.Open), KVM_CREATE_VM on it
        //   (env.Process.Ioctl with KvmIoctl.CreateVm), then KVM_CREATE_DEVICE on the VM fd
        //   with a KvmCreateDevice of type KvmDeviceType.Vfio.
        // TODO step 3: KVM_SET_DEVICE_ATTR (KvmIoctl.SetDeviceAttr with a KvmDeviceAttr:
        //   KvmDevVfio.File, KvmDevVfio.FileAdd) whose addr points at an int in your memory
        //   (VfioSim.Allocate) holding the right fd; then open the device (GetDeviceFd).
        throw new NotImplementedException("lab 7: Attach is not written yet (handout steps 1 to 3)");
    }

    public override void Detach(LabEnvironment env)
    {
        // TODO step 4: undo Attach in an order that is safe on every kernel: the device fd,
        //   KvmDevVfio.FileDel, the KVM-VFIO device and VM fds, then the group out of its
        //   container, the group, the container and your buffer. Check every call's result.
        throw new NotImplementedException("lab 7: Detach is not written yet (handout step 4)");
    }
}
