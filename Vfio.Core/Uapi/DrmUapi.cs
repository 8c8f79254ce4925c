// The DRM constants the VFIO display ioctls carry (include/uapi/drm/drm_fourcc.h and
// include/drm/drm_plane.h, v6.12): the pixel format of a plane and its type.

namespace Vfio.Core.Uapi;

/// <summary>DRM fourcc pixel formats (drm_fourcc.h).</summary>
public static class DrmFourcc
{
    /// <summary>DRM_FORMAT_XRGB8888: fourcc_code('X', 'R', '2', '4'), 32 bits per pixel, x:R:G:B 8:8:8:8 little endian.</summary>
    public const uint Xrgb8888 = 'X' | ('R' << 8) | ('2' << 16) | ((uint)'4' << 24);
}

/// <summary>enum drm_plane_type (the drm_plane_type field of struct vfio_device_gfx_plane_info).</summary>
public static class DrmPlaneType
{
    /// <summary>DRM_PLANE_TYPE_OVERLAY.</summary>
    public const uint Overlay = 0;

    /// <summary>DRM_PLANE_TYPE_PRIMARY.</summary>
    public const uint Primary = 1;

    /// <summary>DRM_PLANE_TYPE_CURSOR.</summary>
    public const uint Cursor = 2;
}
