// Models mdev_device_remove_ops() of drivers/vfio/mdev/mdev_core.c, v4.10 (the 2016 design,
// MdevDesign.Api = Series2016): the remove write calls the vendor's parent_ops->remove
// before the device goes; a refusal fails the write with EBUSY, the mdev stays active and
// its remove attribute comes back (remove_store's device_create_file). Removal by parent
// unregistration cannot be refused (the vfio_mdev bridge calls the vendor and goes on).

using Vfio.Kernel;
using Vfio.Mdev.Design2016;

namespace Vfio.Mdev;

public sealed partial class MdevCore
{
    // Called from DeviceRemove with unreg_sem held for read; 0, or -EBUSY with the device restored.
    private int RemoveOps2016Locked(MdevDevice mdev)
    {
        mdev.MdevParent.UnregSem.AssertHeld();
        int ret = Mdev2016Core.Of(Machine).VendorRemove(mdev, force: false);
        if (ret == 0)
        {
            return 0;
        }

        _listLock.Lock();
        mdev.Active = true;
        _listLock.Unlock();
        RecreateRemoveFile(mdev);
        return ErrorReason.Fail(Errno.EBUSY, $"mdev remove: the vendor refused to remove {mdev.Name} ({ErrnoExtensions.FromReturn(ret).Describe()})");
    }
}
